"""Generation engine: one contract (`base`), three backends, a persistent cache, and `from_spec`.

A spec names the backend and the model in one string, so judges, evaluations and the CLI all
accept the same thing: `hf:MODEL` (or a bare model spec), `vllm:MODEL`, `openai:MODEL[@BASE_URL]`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from rtune.errors import RtuneError
from rtune.generation.base import (
    DecodingParams,
    GenerationRequest,
    GenerationResult,
    Generator,
    StreamingGenerator,
    TextStreamer,
    TokenLogprob,
    generate_in_order,
    in_request_order,
    stream_results,
)
from rtune.generation.cache import CachedGenerator, GenerationCache
from rtune.redact import redact

BACKENDS = ("hf", "vllm", "openai")

__all__ = [
    "BACKENDS",
    "CachedGenerator",
    "DecodingParams",
    "GenerationCache",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "ModelSpec",
    "StreamingGenerator",
    "TextStreamer",
    "TokenLogprob",
    "from_spec",
    "generate_in_order",
    "in_request_order",
    "parse_spec",
    "stream_results",
]


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        return f"{self.backend}:{self.model}" + (f"@{redact(self.base_url)}" if self.base_url else "")


def parse_spec(spec: str, backend: str | None = None) -> ModelSpec:
    """Split `backend:model[@url]`; a bare spec uses `backend` (default hf). A URL only goes with openai.

    The model ends at the first `@http://` or `@https://`: the URL may itself hold an `@` (user:password@host),
    and a spec that names a server must never fall back to the default host, where the key would go.
    """
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in BACKENDS:
        if backend and backend != prefix:
            raise RtuneError(f"model spec '{redact(spec)}' names backend '{prefix}' but --backend is '{backend}'")
        chosen, model = prefix, rest
    else:
        chosen, model = backend or "hf", spec
    if chosen not in BACKENDS:
        raise RtuneError(f"unknown backend '{chosen}'; expected one of {', '.join(BACKENDS)}")
    base_url = None
    url = re.search(r"@https?://", model)
    if url:
        if chosen != "openai":
            raise RtuneError(f"model spec '{redact(spec)}': a server URL needs the openai backend (openai:MODEL@URL)")
        model, base_url = model[: url.start()], model[url.start() + 1 :]
    elif chosen == "openai" and ("://" in model or "@" in model and re.search(r"[.:/]", model.rpartition("@")[2])):
        raise RtuneError(
            f"model spec '{redact(spec)}': the server address needs http:// or https:// "
            "(openai:MODEL@http://HOST:PORT/v1)"
        )
    if not model:
        raise RtuneError(f"model spec '{redact(spec)}' names no model")
    return ModelSpec(chosen, model, base_url)


def _backend_class(backend: str):
    if backend == "hf":
        from rtune.generation.hf import HFGenerator

        return HFGenerator
    if backend == "vllm":
        from rtune.generation.vllm import VLLMGenerator

        return VLLMGenerator
    from rtune.generation.openai_compat import OpenAIGenerator

    return OpenAIGenerator


def _options_for(backend: str, options: dict) -> dict:
    """Keep the options this backend takes; options meant for another backend are dropped, so one
    config drives any backend, but a name no backend knows is an error."""
    accepted = {b: set(inspect.signature(_backend_class(b).__init__).parameters) - {"self", "model"} for b in BACKENDS}
    unknown = set(options) - set().union(*accepted.values())
    if unknown:
        raise RtuneError(f"unknown generator option(s): {', '.join(sorted(unknown))}")
    return {name: value for name, value in options.items() if name in accepted[backend] and value is not None}


def from_spec(
    spec: str,
    *,
    backend: str | None = None,
    cache: str | Path | GenerationCache | None = None,
    refresh: bool = False,
    **options,
) -> Generator:
    """The generator a spec names; with `cache`, wrapped in the persistent cache (a path or an open cache;
    `refresh` asks again where the cached answer is empty)."""
    parsed = parse_spec(spec, backend)
    if parsed.base_url:
        if options.get("base_url") and options["base_url"] != parsed.base_url:
            raise RtuneError(
                f"model spec '{redact(spec)}' names {redact(parsed.base_url)} but base_url is "
                f"{redact(options['base_url'])}"
            )
        options["base_url"] = parsed.base_url
    generator = _backend_class(parsed.backend)(parsed.model, **_options_for(parsed.backend, options))
    return CachedGenerator(generator, cache, refresh=refresh) if cache is not None else generator
