"""`rtune eval responses OUTPUTS.json`: the judge-free response rate (answer, echo, leak, loop, runaway, empty)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rtune.cli.options import option, settings
from rtune.evals.responses import ResponsesSettings as S


def command(
    outputs: Path = typer.Argument(..., help=S.model_fields["outputs"].description),
    out: Path | None = option(S, "out"),
    seed: int = option(S, "seed"),
) -> None:
    """Classify every answer and report the answer rate and each failure rate with bootstrap 95% CIs."""
    from rtune.evals.responses import format_summary, run

    result = run(settings(S, outputs=outputs, out=out, seed=seed))
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(format_summary(result))
    if out is not None:
        console.print(f"wrote {out}")
