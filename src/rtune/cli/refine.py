"""`rtune data refine`: rewrite every completion with an LLM refiner; cached, resumable, with an extraction report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rtune.cli.options import option, settings
from rtune.data.refine import RefineSettings as S


def command(
    file: Path = typer.Argument(..., help=S.model_fields["file"].description),
    refiner: str = option(S, "refiner"),
    out: Path = option(S, "out"),
    backend: str | None = option(S, "backend"),
    base_url: str | None = option(S, "base_url"),
    api_key_env: str | None = option(S, "api_key_env"),
    batch_size: int = option(S, "batch_size", min=1),
    concurrency: int = option(S, "concurrency", min=1),
    timeout: float = option(S, "timeout", min=0.001),
    max_retries: int = option(S, "max_retries", min=0),
    max_new_tokens: int = option(S, "max_new_tokens", min=1),
    prompt_file: Path | None = option(S, "prompt_file"),
    limit: int | None = option(S, "limit", min=1),
    cache: Path | None = option(S, "cache"),
    strict: bool = option(S, "strict"),
) -> None:
    """Refine responses for clarity, structure and tone; keep the original where the refiner's answer can't be used."""
    values = dict(locals())
    from rtune.data.refine import run
    from rtune.progress import Bar

    console = Console(stderr=True, soft_wrap=True)
    with Bar(console) as bar:
        report = run(settings(S, **values), bar)
    console.print(
        f"wrote {len(report.records)} records to {out}: extraction rate {report.extraction_rate:.1%} "
        f"({report.extracted} refined, {report.changed} changed; kept the original for {len(report.no_marker)} "
        f"without the marker and {len(report.cut_off)} cut off at --max-new-tokens); "
        f"{report.generated} generated, {report.from_cache} from cache"
    )
