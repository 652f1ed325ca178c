"""`rtune metrics`: win rates of AlpacaEval-style annotation files, and the difficulty table behind LC."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rtune.cli.options import option, settings
from rtune.winrate.schema import DifficultySettings as D
from rtune.winrate.schema import WinrateSettings as W

app = typer.Typer(no_args_is_help=True, help="Metrics over judge annotations.")


@app.command("winrate")
def winrate(
    files: list[Path] = typer.Argument(..., help=W.model_fields["files"].description),
    out: Path | None = option(W, "out"),
    length_controlled: bool = option(W, "length_controlled", "--lc/--no-lc"),
    difficulty: Path | None = option(W, "difficulty"),
    n_resamples: int = option(W, "n_resamples", "--bootstrap", min=10),
    seed: int = option(W, "seed"),
) -> None:
    """Print per-file JSON: win_rate, standard_error, length_controlled_winrate, n, interval, counts."""
    values = dict(locals())
    from rtune.winrate.metrics import summarize_files

    reports = summarize_files(settings(W, **values))
    typer.echo(
        json.dumps(
            {path: report.model_dump(mode="json") for path, report in reports.items()}, indent=2, ensure_ascii=False
        )
    )


@app.command("difficulty")
def difficulty(
    paths: list[Path] = typer.Argument(..., help=D.model_fields["paths"].description),
    out: Path = option(D, "out"),
    exclude: list[str] = option(D, "exclude"),
    C: float | None = option(D, "C", "--joint-c", min=0),
    note: str | None = option(D, "note"),
) -> None:
    """Estimate per-instruction difficulty for the length-controlled win rate from a pool of models."""
    values = dict(locals())
    from rtune.winrate.difficulty import build_table

    table = build_table(settings(D, **values))
    typer.echo(
        f"wrote {out}: {len(table.difficulty)} instructions from {len(table.provenance['inputs'])} models "
        f"(C={table.C:.4g}, length_slope={table.length_slope:.3f})"
    )
