"""`rtune run`: an experiment grid as a chain of cached stages, run one after another.

Every stage (build data, train, generate, evaluate, judge) has a hash of what decides its result:
its settings, the content of its data or the model's fingerprint, and the hashes of the stages it
reads. A finished stage leaves `stage.json` with that hash in its folder under `stages/`; a stage
whose hash matches is skipped, one whose inputs changed runs again, and so does everything
downstream of it. A stage works in `<folder>.partial-<hash>` and is renamed into place when done,
so a killed run resumes: finished stages stay, and the interrupted one continues from its own
resume log (training checkpoints, generation cache, judge logs) in the partial folder.
"""

from __future__ import annotations

import fnmatch
import gc
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from rtune.errors import RtuneError
from rtune.experiment import Cell, Experiment, cells
from rtune.io import atomic_write_json, read_json, stable_hash

STAGE_FILE = "stage.json"  # the done marker: kind, cell, hash, inputs, seconds
RESULT_FILE = "result.json"  # each stage's summary, read by the report
STAGE_FORMAT = 1  # bump when a stage's outputs change meaning, so every stage reruns


@dataclass
class Stage:
    key: str  # also its folder under <run>/stages
    kind: str
    cell: Cell | None
    inputs: dict  # everything, besides upstream stages, that decides the result; the action reads its settings here
    action: Callable[["Context"], dict]
    deps: tuple[str, ...] = ()


@dataclass
class Context:
    stage: Stage
    work: Path  # the partial folder the action writes into
    dirs: dict[str, Path]  # finished folders of the stages it depends on
    experiment: Experiment
    console: Console

    @property
    def settings(self) -> dict:
        return self.stage.inputs["settings"]

    def model(self) -> str:
        """The model this stage evaluates: a trained stage's merged folder, or the model spec itself."""
        source = self.stage.inputs["model"]
        return str(self.dirs[source["trained_by"]] / "merged") if "trained_by" in source else source["spec"]


@dataclass
class Plan:
    run_dir: Path
    stages: dict[str, Stage] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def add(self, stage: Stage) -> str:
        if stage.key not in self.stages:
            self.hashes[stage.key] = stable_hash({"format": STAGE_FORMAT, "kind": stage.kind, "inputs": stage.inputs,
                                                  "deps": {d: self.hashes[d] for d in stage.deps}})
            self.stages[stage.key] = stage
        return stage.key

    def folder(self, key: str) -> Path:
        return self.run_dir / "stages" / key

    def status(self, key: str) -> str:
        marker = self.folder(key) / STAGE_FILE
        if not marker.exists():
            return "new"
        return "cached" if read_json(marker).get("hash") == self.hashes[key] else "changed"


def default_run_dir(experiment: Experiment) -> Path:
    return Path(experiment.output_dir).expanduser() if experiment.output_dir else Path("runs") / experiment.name


def select(plan: Plan, only: list[str] | None) -> list[str]:
    """Stages of the cells matching `only` (names or globs) and the shared data stages they need."""
    if not only:
        return list(plan.stages)
    names = {stage.cell.name for stage in plan.stages.values() if stage.cell}
    unknown = [pattern for pattern in only if not fnmatch.filter(names, pattern)]
    if unknown:
        raise RtuneError(f"--only {unknown[0]}: no such cell; cells: {', '.join(sorted(names))}")
    chosen = {key for key, stage in plan.stages.items() if stage.cell and any(fnmatch.fnmatch(stage.cell.name, p) for p in only)}
    for key in reversed(list(plan.stages)):  # stages are in dependency order: one backward pass closes over shared deps
        if key in chosen:
            chosen |= {d for d in plan.stages[key].deps if plan.stages[d].cell is None}
    return [key for key in plan.stages if key in chosen]


def describe_plan(plan: Plan, keys: list[str]) -> list[tuple[str, str, str]]:
    """(stage, status, note) rows: cached, new or changed; the note says when it must wait for an upstream stage."""
    rows, pending = [], set()
    for key in keys:
        status, note = plan.status(key), ""
        if status != "cached":
            pending.add(key)
            note = "after upstream" if any(dep in pending for dep in plan.stages[key].deps) else ""
        rows.append((key, status, note))
    return rows


def _work_folder(final: Path, stage: Stage, digest: str) -> Path:
    """Where a stage works before it is renamed into place.

    A cell's stage keeps one folder per input hash, so a rerun resumes in it (and folders left by
    older inputs are removed). Shared data stages are cheap and may be built by several cluster
    jobs at once, so each process gets its own.
    """
    if stage.cell is None:
        return final.with_name(f"{final.name}.partial-{digest[:12]}-{socket.gethostname()}-{os.getpid()}")
    for stale in final.parent.glob(f"{final.name}.partial-*"):
        if stale.name != f"{final.name}.partial-{digest[:12]}":
            shutil.rmtree(stale, ignore_errors=True)
    return final.with_name(f"{final.name}.partial-{digest[:12]}")


def _run_stage(plan: Plan, key: str, experiment: Experiment, console: Console) -> None:
    stage, final, digest = plan.stages[key], plan.folder(key), plan.hashes[key]
    work = _work_folder(final, stage, digest)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = stage.action(Context(stage, work, {d: plan.folder(d) for d in stage.deps}, experiment, console))
    atomic_write_json(work / RESULT_FILE, result)
    cell = stage.cell
    atomic_write_json(work / STAGE_FILE, {
        "key": key, "kind": stage.kind, "hash": digest, "inputs": stage.inputs, "deps": list(stage.deps),
        "cell": None if cell is None else {"name": cell.name, "model": cell.model, "method": cell.method,
                                           "dataset": cell.dataset, "safety": cell.safety, "seed": cell.seed},
        "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if plan.status(key) == "cached":  # another job finished the same shared stage meanwhile
        shutil.rmtree(work)
        return
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)


def execute(plan: Plan, keys: list[str], experiment: Experiment, console: Console) -> dict[str, str]:
    """Run every selected stage that is not cached; returns each stage's outcome (cached, done, waiting)."""
    outcome: dict[str, str] = {}
    todo = [key for key in keys if plan.status(key) != "cached"]
    outcome.update({key: "cached" for key in keys if key not in todo})
    console.print(f"[bold]{experiment.name}[/bold]: {len(keys)} stages, {len(keys) - len(todo)} cached, {len(todo)} to run")
    for number, key in enumerate(todo, start=1):
        missing = [d for d in plan.stages[key].deps if plan.status(d) != "cached"]
        if missing:
            outcome[key] = "waiting"
            console.print(f"[yellow]skip[/yellow] {key}: waiting for {', '.join(missing)} (run those cells first)")
            continue
        console.rule(f"[{number}/{len(todo)}] {key}")
        started = time.time()
        _run_stage(plan, key, experiment, console)
        gc.collect()  # the stage's model goes before the next one loads
        outcome[key] = "done"
        console.print(f"[green]done[/green] {key} in {time.time() - started:.0f}s")
    return outcome


# ---------------------------------------------------------------------------------------------
# Building the plan from an experiment
# ---------------------------------------------------------------------------------------------


def build_plan(experiment: Experiment, run_dir: Path) -> Plan:
    from rtune import stages  # the actions; imported here so `rtune --help` stays fast

    plan, evals, grid = Plan(run_dir), experiment.evals, cells(experiment)
    sources = {cell.name: stages.model_source(plan, experiment, cell) for cell in grid}
    pairs = pairwise_pairs(experiment, grid)
    compared = {cell.name for pair in pairs for cell in pair}
    # what the benchmark files hold, read once: editing a local copy reruns the stages that read it
    core_content = stages.core_content(experiment, evals.core.tasks) if evals.core else None
    safety_content = stages.safety_content(experiment) if evals.safety else None

    for cell in grid:
        source = sources[cell.name]
        deps = (source["trained_by"],) if "trained_by" in source else ()

        def generate(instructions: str) -> str:
            limit = _widest_limit(evals, instructions)
            return plan.add(stages.generate_stage(experiment, cell, source, deps, instructions, limit))

        if evals.examples and evals.examples.applies(cell):
            generate(evals.examples.instructions)
        if cell.name in compared:
            generate(evals.pairwise.instructions)
        if evals.likelihood and evals.likelihood.applies(cell):
            plan.add(stages.likelihood_stage(experiment, cell, source, deps))
        if evals.core and evals.core.applies(cell):
            plan.add(stages.core_stage(experiment, cell, source, deps, core_content))
        if evals.safety and evals.safety.applies(cell):
            plan.add(stages.safety_stage(experiment, cell, plan.add(stages.safety_generate_stage(experiment, cell, source, deps, safety_content))))
        if evals.aspects and evals.aspects.applies(cell):
            plan.add(stages.aspects_stage(experiment, cell, generate(evals.aspects.instructions)))
    for cell, reference in pairs:
        instructions = evals.pairwise.instructions
        plan.add(stages.pairwise_stage(experiment, cell, reference, stages.generate_key(cell, instructions),
                                       stages.generate_key(reference, instructions)))
    return plan


def pairwise_pairs(experiment: Experiment, grid: list[Cell]) -> list[tuple[Cell, Cell]]:
    """(cell, reference) for every cell the pairwise eval applies to: the reference is a cell name or a sibling method."""
    spec = experiment.evals.pairwise
    if spec is None:
        return []
    by_name = {cell.name: cell for cell in grid}
    pairs = []
    for cell in grid:
        reference = by_name.get(spec.reference) or by_name.get(cell.sibling(spec.reference))
        if spec.applies(cell) and reference is not None and reference.name != cell.name:
            pairs.append((cell, reference))
    if not pairs:
        raise RtuneError(f"evals.pairwise: reference '{spec.reference}' matches no cell to compare with "
                         f"(give a method in `methods`, or a cell name such as {grid[0].name})")
    return pairs


def _widest_limit(evals, instructions: str) -> int | None:
    """One generation per instruction set serves every eval that reads it: the largest limit asked for."""
    limits = [spec.limit for spec in (evals.examples, evals.pairwise, evals.aspects) if spec and spec.instructions == instructions]
    return None if any(limit is None for limit in limits) else max(limits)


def run_experiment(experiment: Experiment, run_dir: Path | None = None, only: list[str] | None = None,
                   dry_run: bool = False, console: Console | None = None) -> dict[str, str]:
    """Plan, then either print the plan (`dry_run`) or run it and write the report."""
    from rich.table import Table

    console = console or Console(stderr=True)
    run_dir = Path(run_dir) if run_dir else default_run_dir(experiment)
    plan = build_plan(experiment, run_dir)
    keys = select(plan, only)
    if dry_run:
        table = Table("stage", "status", "", "hash", title=f"{experiment.name} → {run_dir}")
        rows = describe_plan(plan, keys)
        for key, status, note in rows:
            table.add_row(key, f"[green]{status}[/green]" if status == "cached" else status, note, plan.hashes[key][:12])
        console.print(table)
        return {key: status for key, status, _ in rows}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "experiment.json", {**experiment.model_dump(mode="json"), "stages": list(plan.stages)})
    outcome = execute(plan, keys, experiment, console)
    if not only:
        from rtune.report import write_report

        paths = write_report(run_dir)
        console.print(f"report: {paths[0]} and {paths[1]}")
    return outcome
