"""`rtune demo`: base vs IT vs RT on gemma-3-270m, on a CPU, offline, with a report at the end."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def command(
    quick: bool = typer.Option(
        False, "--quick", help="A smoke run in about 3 minutes: a few training steps, tiny slices."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help=(
            "Local datasets: adds XSTest refusals and an ARC-Easy slice to the packaged data "
            "(default: $RTUNE_DATA_DIR; without either, only packaged data)."
        ),
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory (default: runs/demo or runs/demo-quick). Rerun to resume."
    ),
) -> None:
    """Train RT and IT on the packaged pairs, answer held-out instructions, score the response rate and the
    likelihood metric (both judge-free), and write a report."""
    from rich.console import Console

    from rtune.pipeline.demo import run_demo

    console = Console(stderr=True)
    started = time.time()
    run_dir = run_demo(quick, data_dir, out, console)
    console.print(
        f"demo finished in {time.time() - started:.0f}s; open {run_dir / 'report.html'} "
        f"(summary: {run_dir / 'report.md'})"
    )
