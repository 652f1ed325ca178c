"""`rtune report RUN_DIR`: one self-contained HTML page and a Markdown summary of a run."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `rtune run` or `rtune demo`."),
    out: Path | None = typer.Option(
        None, "--out", help="Write here instead, the Markdown's figures as PNG files in OUT/figures."
    ),
) -> None:
    """Tables of every metric with CIs, figures, training curves and example outputs."""
    from rtune.report.document import write_report

    html_path, md_path = write_report(run_dir, out)
    print(f"wrote {html_path} and {md_path}")
