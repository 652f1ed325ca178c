"""`rtune annotate agreement DIR`: percent agreement and Cohen's kappa between people, and with LLM judges."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _number(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def command(
    directory: Path = typer.Argument(..., help="The annotate folder."),
    with_files: list[Path] = typer.Option(
        [], "--with", help="An annotations file (LLM judge, another folder's export) to compare with; repeatable."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Inter-annotator agreement: percent agreement and Cohen's kappa on the items two raters share."""
    from rtune.annotate.agreement import AgreementSettings
    from rtune.annotate.agreement import agreement as compute

    result = compute(AgreementSettings(directory=directory, with_files=with_files))
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    for path, raters in result.files.items():
        if not raters:
            typer.echo(f"note: {path} has no annotation of this folder's pairs", err=True)
    if not result.comparisons:
        typer.echo(
            f"nothing to compare: {len(result.people)} annotator(s) in {directory}; "
            "add another person, or an LLM judge's annotations with --with"
        )
        return
    for row in result.comparisons:
        mismatched = f" ({row.n_mismatched} rows with other outputs left out)" if row.n_mismatched else ""
        typer.echo(
            f"{row.rater_a} vs {row.rater_b}: {row.n_shared} shared items, agreement "
            f"{_number(row.percent_agreement, '.1f')}%, Cohen's kappa "
            f"{_number(row.cohen_kappa, '.3f')}{mismatched}"
        )
