"""`rtune run`: plan an experiment, show or run the plan, and write the report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from rtune.io import atomic_write_json, check_output
from rtune.pipeline.builder import build_plan
from rtune.pipeline.experiment import Experiment
from rtune.pipeline.parallel import execute_parallel
from rtune.pipeline.plan import describe, execute, select
from rtune.pipeline.protocols import protocol_rows
from rtune.redact import redacted


def default_run_dir(experiment: Experiment) -> Path:
    return Path(experiment.output_dir).expanduser() if experiment.output_dir else Path("runs") / experiment.name


def run_experiment(
    experiment: Experiment,
    run_dir: Path | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    console: Console | None = None,
    jobs: int = 1,
) -> dict[str, str]:
    """Plan, then either print the plan (`dry_run`) or run it and write the report; returns each stage's outcome.

    `jobs` > 1 runs independent stages side by side, one process each (see `rtune.pipeline.parallel`)."""
    console = console or Console(stderr=True)
    run_dir = Path(run_dir) if run_dir else default_run_dir(experiment)
    if not dry_run:
        check_output(run_dir, directory=True)
    plan = build_plan(experiment, run_dir)
    keys = select(plan, only)
    if dry_run:
        table = Table("stage", "status", "", "hash", title=f"{experiment.name} → {run_dir}")
        rows = describe(plan, keys)
        for key, status, note in rows:
            table.add_row(
                key, f"[green]{status}[/green]" if status == "cached" else status, note, plan.hashes[key][:12]
            )
        console.print(table)
        choices = Table("protocol", title="protocols (docs/fidelity.md)")
        choices.add_column("choice", overflow="fold")
        for name, value in protocol_rows(experiment, plan):
            choices.add_row(name, value)
        console.print(choices)
        return {key: status for key, status, _ in rows}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        run_dir / "experiment.json", redacted({**experiment.model_dump(mode="json"), "stages": list(plan.stages)})
    )
    if jobs > 1:
        outcome = execute_parallel(plan, keys, experiment, console, experiment.name, jobs)
    else:
        outcome = execute(plan, keys, experiment, console, experiment.name)
    if not only:
        from rtune.report.document import write_report

        paths = write_report(run_dir)
        console.print(f"report: {paths[0]} and {paths[1]}")
    return outcome
