"""Answer an instruction set with any model and write an AlpacaEval-format outputs file: `rtune generate`.

The same function is the pipeline's generation stage. Every call goes through the persistent cache,
so a killed run resumes and a finished one reruns with zero model calls; prompts come from
`rtune.prompting`, so `rtune generate` and `rtune run` send the same bytes for the same format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtune.generation.hf import DEFAULT_BATCH_SIZE
from rtune.generation.openai_compat import RetrySettings
from rtune.progress import SILENT, Progress

CACHE_NAME = "generation_cache.sqlite"


class GenerateSettings(RetrySettings):
    """What `rtune generate` and a pipeline generation stage are asked to do."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="hf:MODEL or a bare model spec, vllm:MODEL, openai:MODEL or openai:MODEL@URL")
    input: str = Field(
        description="alpaca_eval, just_eval, heldout, or a JSON/JSONL/CSV file with 'instruction' (or 'prompt')"
    )
    out: Path = Field(description="output JSON (AlpacaEval format)")
    prompt: str = Field(
        "chat",
        description="chat (the model's template, Tulu's when it has none), tulu, plain, "
        "a URIAL mode (urial, urial_r, 0shot) or a URIAL prompt file",
    )
    backend: str | None = Field(None, description="hf, vllm or openai (default: from the spec, else hf)")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (openai backend)")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key (default OPENAI_API_KEY)"
    )
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, description="prompts per batch (hf); larger is faster while memory lasts"
    )
    concurrency: int = Field(8, ge=1, description="requests in flight (openai)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="hf: fp32 gives the same greedy answers whatever the batch "
        "size; bf16 is faster on some hardware but does not",
    )
    max_new_tokens: int = Field(2048, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy (the paper's setting)")
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    seed: int = 0
    stop: tuple[str, ...] = Field((), description="stop strings")
    limit: int | None = Field(None, ge=1, description="only the first N instructions")
    data_dir: Path | None = Field(
        None, description="local datasets for named inputs (default: $RTUNE_DATA_DIR, else the hub)"
    )
    cache: Path | None = Field(None, description=f"SQLite cache (default: {CACHE_NAME} beside --out)")
    refresh: bool = Field(False, description="ask again for the items whose cached answer is empty")
    name: str | None = Field(None, description="the 'generator' field (default: model name, plus the URIAL mode)")


class GenerateReport(BaseModel):
    out: Path
    n: int
    generated: int  # answers the model produced in this run
    from_cache: int
    cache: Path
    hit_token_limit: int  # answers that stopped at max_new_tokens


def default_cache(out: Path) -> Path:
    """One cache per run directory, shared by every output written there."""
    return Path(out).parent / CACHE_NAME


def generator_name(model: str, prompt: str) -> str:
    from rtune.generation import parse_spec
    from rtune.prompting import FORMATS

    base = Path(parse_spec(model).model.rstrip("/")).name
    return base if prompt in FORMATS else f"{base}-{Path(prompt).stem}"


def generate_outputs(settings: GenerateSettings, progress: Progress = SILENT) -> GenerateReport:
    """Answer every instruction (cache first) and write the outputs file atomically.

    The output path and the prompt lengths are checked before any model is loaded or called.
    """
    from rtune.data.instructions import load_instructions, output_row
    from rtune.generation import DecodingParams, from_spec, generate_in_order, parse_spec
    from rtune.generation.render import check_prompt_lengths
    from rtune.io import atomic_write_json, check_output
    from rtune.prompting import parse_format

    s = settings
    check_output(s.out, inputs=[s.input, s.cache])
    instructions = load_instructions(s.input, s.data_dir, s.limit)
    prompting = parse_format(s.prompt)
    params = DecodingParams(
        max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, stop=s.stop, seed=s.seed
    )
    requests = [prompting.request(item.text, params) for item in instructions]
    spec = parse_spec(s.model, s.backend)
    if spec.backend != "openai":  # a server says itself what it cannot read
        names = [
            f"{s.input}: item {n}" + (f" (id {item.extra['id']})" if "id" in item.extra else "")
            for n, item in enumerate(instructions, start=1)
        ]
        check_prompt_lengths(spec.model, requests, names)
    cache = s.cache or default_cache(s.out)
    generator = from_spec(
        s.model,
        backend=s.backend,
        cache=cache,
        refresh=s.refresh,
        base_url=s.base_url,
        api_key_env=s.api_key_env,
        batch_size=s.batch_size,
        concurrency=s.concurrency,
        timeout=s.timeout,
        max_retries=s.max_retries,
        bf16=s.precision == "bf16",
    )
    results = generate_in_order(generator, requests, progress)
    label = s.name or generator_name(s.model, s.prompt)
    precision = {"precision": s.precision} if spec.backend == "hf" else {}  # the one backend it applies to
    atomic_write_json(
        s.out,
        [
            output_row(
                item,
                prompting.clean(result.text),
                label,
                finish_reason=result.finish_reason,
                output_tokens=result.completion_tokens,
                **precision,
            )
            for item, result in zip(instructions, results, strict=False)
        ],
    )
    return GenerateReport(
        out=s.out,
        n=len(results),
        generated=generator.misses,
        from_cache=generator.hits,
        cache=cache,
        hit_token_limit=sum(result.finish_reason == "length" for result in results),
    )
