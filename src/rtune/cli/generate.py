"""`rtune generate`: answer an instruction set with any backend; cached, resumable, AlpacaEval-format output."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rtune.cli.options import option, settings
from rtune.generation.outputs import GenerateSettings as S


def command(
    model: str = option(S, "model"),
    input_: str = option(S, "input", "--input"),
    out: Path = option(S, "out"),
    prompt: str = option(S, "prompt"),
    backend: str | None = option(S, "backend"),
    base_url: str | None = option(S, "base_url"),
    api_key_env: str | None = option(S, "api_key_env"),
    batch_size: int = option(S, "batch_size", min=1),
    concurrency: int = option(S, "concurrency", min=1),
    timeout: float = option(S, "timeout", min=0.001),
    max_retries: int = option(S, "max_retries", min=0),
    precision: str = option(S, "precision"),
    max_new_tokens: int = option(S, "max_new_tokens", min=1),
    temperature: float = option(S, "temperature", min=0.0),
    top_p: float = option(S, "top_p", min=0.0, max=1.0),
    seed: int = option(S, "seed"),
    stop: list[str] = option(S, "stop"),
    limit: int | None = option(S, "limit", min=1),
    data_dir: Path | None = option(S, "data_dir"),
    cache: Path | None = option(S, "cache"),
    refresh: bool = option(S, "refresh"),
    name: str | None = option(S, "name"),
) -> None:
    """Generate answers to an instruction set; rerunning skips everything already generated."""
    values = {**locals(), "input": input_, "stop": tuple(stop)}
    del values["input_"]
    from rtune.generation.outputs import generate_outputs
    from rtune.progress import Bar

    console = Console(stderr=True, soft_wrap=True)
    with Bar(console) as bar:
        report = generate_outputs(settings(S, **values), bar)
    console.print(
        f"wrote {report.n} outputs to {report.out} ({report.generated} generated, {report.from_cache} from cache "
        f"{report.cache}; {report.hit_token_limit} stopped at --max-new-tokens)"
    )
