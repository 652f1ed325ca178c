"""`rtune run EXPERIMENT.yaml`: a grid of models × datasets × methods × seeds, each stage cached by its inputs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    experiment: Path = typer.Argument(..., help="Experiment YAML (see configs/experiments/)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (what would run, what is cached) and stop."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Only this cell (name or glob, repeatable), e.g. 'gemma/lima/rt/*'; no report."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: the experiment's output_dir, else runs/<name>)."),
) -> None:
    """Run (or resume) an experiment: finished stages are skipped, changed ones rerun with what depends on them."""
    from rtune.experiment import load_experiment
    from rtune.runner import run_experiment

    run_experiment(load_experiment(experiment), out, only or None, dry_run)
