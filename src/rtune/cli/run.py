"""`rtune run EXPERIMENT.yaml`: a grid of models × datasets × methods × seeds, each stage cached by its inputs."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    experiment: Path = typer.Argument(
        ..., help="Experiment YAML, or a shipped experiment by name (see configs/experiments/)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (what would run, what is cached) and stop."),
    only: list[str] | None = typer.Option(
        None, "--only", help="Only this cell (name or glob, repeatable), e.g. 'gemma/lima/rt/*'; no report."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory (default: the experiment's output_dir, else runs/<name>)."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Local datasets (default: the experiment's data_dir, else $RTUNE_DATA_DIR, else the hub).",
    ),
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        min=1,
        help="Stages run side by side, one process each, sharing the cores (e.g. train IT and RT at once).",
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        min=0.001,
        help="Seconds to wait for one answer from a judge or refiner server "
        "(default: the experiment's server.timeout, else 120).",
    ),
    max_retries: int | None = typer.Option(
        None,
        "--max-retries",
        min=0,
        help="Tries again after a timeout, HTTP 429 or 5xx (default: the experiment's server.max_retries, else 3).",
    ),
) -> None:
    """Run (or resume) an experiment: finished stages are skipped, changed ones rerun with what depends on them."""
    from rtune.pipeline.experiment import load_experiment
    from rtune.pipeline.runner import run_experiment

    run_experiment(load_experiment(experiment, data_dir, timeout, max_retries), out, only or None, dry_run, jobs=jobs)
