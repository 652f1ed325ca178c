"""`rtune data build`: canonical records from a named source, a local file or the hub."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rtune.cli.options import option, settings
from rtune.data.sources import BuildSettings as S


def build(
    source: str = typer.Argument(..., help=S.model_fields["source"].description),
    out: Path = option(S, "out"),
    data_dir: Path | None = option(S, "data_dir"),
    max_examples: int | None = option(S, "max_examples", min=1),
    seed: int = option(S, "seed"),
    prompt_field: str | None = option(S, "prompt_field"),
    completion_field: str | None = option(S, "completion_field"),
    strict: bool = option(S, "strict"),
) -> None:
    """Build canonical {id, prompt, completion, source} records."""
    values = dict(locals())
    from rtune.data.sources import build as build_file

    report = build_file(settings(S, **values))
    console = Console(stderr=True)
    console.print(
        f"wrote {report.records} records to {out} (from {report.total_rows} rows; "
        f"skipped {report.skipped_empty} with an empty prompt or completion)"
    )
    if report.note:
        console.print(f"[yellow]note:[/yellow] {report.note}")
