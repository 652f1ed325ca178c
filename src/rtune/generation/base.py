"""The contract every model call goes through: generation, judging, refinement.

Backends (in-process transformers, vLLM, any OpenAI-compatible server) take the same requests and
return the same results, so a judge or an evaluation never knows which one it runs on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class DecodingParams(BaseModel):
    """Decoding settings; part of every cache key. Defaults follow the paper: greedy, 2,048 new tokens."""

    model_config = ConfigDict(frozen=True)

    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    top_logprobs: int | None = None  # ask for this many alternatives per generated token


class GenerationRequest(BaseModel):
    """Either a raw `prompt` (sent as is) or chat `messages` (the backend applies the model's template)."""

    model_config = ConfigDict(frozen=True)

    prompt: str | None = None
    messages: tuple[dict, ...] | None = None
    params: DecodingParams = Field(default_factory=DecodingParams)
    # Local backends. None: the tokenizer's BOS exactly once (not added when the text starts with it). A bool is
    # passed to the tokenizer as `add_special_tokens`, whatever the text holds: how lm-eval <= 0.4.5 encoded
    # prompts, which `rtune eval core --protocol paper` reproduces.
    add_special_tokens: bool | None = None

    @model_validator(mode="after")
    def _exactly_one_input(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a GenerationRequest needs exactly one of `prompt` or `messages`")
        return self

    @model_serializer(mode="wrap")
    def _unset_encoding_left_out(self, handler):
        """The dump (and so every cache key) of a request that leaves the encoding alone is what it was before."""
        data = handler(self)
        if self.add_special_tokens is None:
            data.pop("add_special_tokens", None)
        return data


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)  # alternative token -> logprob


class GenerationResult(BaseModel):
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    cached: bool = False


class Generator(Protocol):
    """A model that answers batches of requests, results in request order."""

    fingerprint: str  # identity of the model behind it (weights hash, or server + model name)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]: ...


@runtime_checkable
class StreamingGenerator(Generator, Protocol):
    """A generator that hands back each result as soon as it is done, so callers can save it at once.

    Every backend here implements it; the cache uses it to commit finished items before the rest
    are done, which is what makes a killed job resumable.
    """

    def stream(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]: ...


@runtime_checkable
class TextStreamer(Protocol):
    """A backend that can show one answer token by token (interactive chat)."""

    def stream_text(self, request: GenerationRequest) -> Iterator[str]: ...


def in_request_order(pairs: Iterable[tuple[int, GenerationResult]], count: int) -> list[GenerationResult]:
    """Collect `(index, result)` pairs from `stream` into a list in request order."""
    results: list[GenerationResult | None] = [None] * count
    for index, result in pairs:
        results[index] = result
    missing = [index for index, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"generator returned no result for requests {missing[:10]}")
    return results  # type: ignore[return-value]


FALLBACK_CHUNK = 16  # requests per call for generators that cannot stream


def stream_results(generator: Generator, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
    """`(index, result)` pairs as they finish, from any generator (chunked `generate` when it cannot stream)."""
    if isinstance(generator, StreamingGenerator):
        yield from generator.stream(requests)
        return
    for start in range(0, len(requests), FALLBACK_CHUNK):
        yield from enumerate(generator.generate(requests[start : start + FALLBACK_CHUNK]), start=start)


def generate_in_order(
    generator: Generator, requests: list[GenerationRequest], progress=None, label: str = "generate"
) -> list[GenerationResult]:
    """Every result, in request order, advancing `progress` (an `rtune.progress.Progress`) as each one arrives."""
    if progress is not None:
        progress.start(label, len(requests))

    def advancing():
        for pair in stream_results(generator, requests):
            if progress is not None:
                progress.advance(1)
            yield pair

    return in_request_order(advancing(), len(requests))
