"""`rtune annotate export DIR`: people's judgments as AlpacaEval annotations, for `rtune metrics winrate`."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    directory: Path = typer.Argument(..., help="The annotate folder (--out of `rtune annotate`)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default DIR/annotations.json)."),
    no_skipped: bool = typer.Option(
        False, "--no-skipped", help="Leave skipped pairs out instead of writing preference null."
    ),
) -> None:
    """Write the judgments as AlpacaEval annotations (1 reference, 2 model, 1.5 tie), for `rtune metrics winrate`."""
    from rtune.annotate.export import ExportSettings, export_annotations

    result = export_annotations(ExportSettings(directory=directory, out=out, include_skipped=not no_skipped))
    people = ", ".join(f"{name}: {n}" for name, n in result.judgments.items()) or "none"
    typer.echo(
        f"wrote {result.path}: {result.n_rows} rows over {result.n_pairs} pairs "
        f"({result.n_skipped} skipped); judgments per annotator: {people}"
    )
    if result.n_unknown:
        typer.echo(f"note: {result.n_unknown} judgments name pairs the folder no longer lists; not exported", err=True)
