"""A plan of cached stages and the engine that runs it; it knows nothing of what the stages do.

Every stage has a hash of what decides its result: its kind, its inputs (settings, the content of
the data it reads, the fingerprint of its model) and the hashes of the stages it depends on. A
finished stage leaves `stage.json` with that hash in its folder; a stage whose hash matches is
skipped, one whose inputs changed runs again, and so does everything downstream. A stage works in
`<folder>.partial-<hash>` and is renamed into place when done, so a killed run resumes: finished
stages stay, and the interrupted one continues from its own resume log in the partial folder.
"""

from __future__ import annotations

import fnmatch
import gc
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from rtune.errors import RtuneError
from rtune.io import atomic_write_json, read_json, stable_hash
from rtune.redact import redacted

STAGE_FILE = "stage.json"  # the done marker: kind, cell, hash, inputs, seconds
RESULT_FILE = "result.json"  # the stage's typed result, read by the report
STAGE_FORMAT = 1  # bump when a stage's outputs change meaning, so every stage reruns


@dataclass
class Stage:
    key: str  # also its folder under <run>/stages
    kind: str
    cell: Any  # the cell it belongs to (anything with a `name`), or None for a shared stage
    inputs: dict  # everything, besides upstream stages, that decides the result
    run: Callable[[Context], BaseModel]
    deps: tuple[str, ...] = ()


@dataclass
class Context:
    stage: Stage
    work: Path  # the partial folder the stage writes into
    dirs: dict[str, Path]  # finished folders of the stages it depends on
    env: Any  # what the planner passes to every stage (the experiment)
    console: Console

    @property
    def settings(self) -> dict:
        return self.stage.inputs["settings"]


@dataclass
class Plan:
    run_dir: Path
    stages: dict[str, Stage] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def add(self, stage: Stage) -> str:
        """Add a stage once (a second add of the same key is a no-op) and return its key."""
        if stage.key not in self.stages:
            self.hashes[stage.key] = stable_hash(
                {
                    "format": STAGE_FORMAT,
                    "kind": stage.kind,
                    "inputs": stage.inputs,
                    "deps": {d: self.hashes[d] for d in stage.deps},
                }
            )
            self.stages[stage.key] = stage
        return stage.key

    def folder(self, key: str) -> Path:
        return self.run_dir / "stages" / key

    def status(self, key: str) -> str:
        marker = self.folder(key) / STAGE_FILE
        if not marker.exists():
            return "new"
        return "cached" if read_json(marker).get("hash") == self.hashes[key] else "changed"


def select(plan: Plan, only: list[str] | None) -> list[str]:
    """Stages of the cells matching `only` (names or globs) and the shared stages they need."""
    if not only:
        return list(plan.stages)
    names = {stage.cell.name for stage in plan.stages.values() if stage.cell}
    unknown = [pattern for pattern in only if not fnmatch.filter(names, pattern)]
    if unknown:
        raise RtuneError(f"--only {unknown[0]}: no such cell; cells: {', '.join(sorted(names))}")
    chosen = {
        key
        for key, stage in plan.stages.items()
        if stage.cell and any(fnmatch.fnmatch(stage.cell.name, p) for p in only)
    }
    for key in reversed(list(plan.stages)):  # stages are in dependency order: one backward pass closes over shared deps
        if key in chosen:
            chosen |= {d for d in plan.stages[key].deps if plan.stages[d].cell is None}
    return [key for key in plan.stages if key in chosen]


def describe(plan: Plan, keys: list[str]) -> list[tuple[str, str, str]]:
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
    older inputs are removed). Shared stages are cheap and may be built by several cluster jobs at
    once, so each process gets its own.
    """
    if stage.cell is None:
        return final.with_name(f"{final.name}.partial-{digest[:12]}-{socket.gethostname()}-{os.getpid()}")
    for stale in final.parent.glob(f"{final.name}.partial-*"):
        if stale.name != f"{final.name}.partial-{digest[:12]}":
            shutil.rmtree(stale, ignore_errors=True)
    return final.with_name(f"{final.name}.partial-{digest[:12]}")


def _cell_record(cell: Any) -> dict | None:
    if cell is None:
        return None
    return cell.model_dump() if isinstance(cell, BaseModel) else dict(vars(cell))


def run_stage(plan: Plan, key: str, env: Any, console: Console) -> None:
    stage, final, digest = plan.stages[key], plan.folder(key), plan.hashes[key]
    work = _work_folder(final, stage, digest)
    work.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.time(), time.process_time()
    result = stage.run(Context(stage, work, {d: plan.folder(d) for d in stage.deps}, env, console))
    atomic_write_json(work / RESULT_FILE, result.model_dump(mode="json"))
    atomic_write_json(
        work / STAGE_FILE,
        redacted(
            {
                "key": key,
                "kind": stage.kind,
                "hash": digest,
                "inputs": stage.inputs,
                "deps": list(stage.deps),
                "cell": _cell_record(stage.cell),
                "seconds": round(time.time() - started, 1),
                "cpu_seconds": round(time.process_time() - cpu_started, 1),  # all threads of this process
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        ),
    )
    if plan.status(key) == "cached":  # another job finished the same shared stage meanwhile
        shutil.rmtree(work)
        return
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)


def announce(plan: Plan, keys: list[str], console: Console, title: str) -> tuple[list[str], dict[str, str]]:
    """The selected stages still to run, and the outcome so far (the cached ones); prints the count."""
    todo = [key for key in keys if plan.status(key) != "cached"]
    console.print(f"[bold]{title}[/bold]: {len(keys)} stages, {len(keys) - len(todo)} cached, {len(todo)} to run")
    return todo, {key: "cached" for key in keys if key not in todo}


def blocked(plan: Plan, key: str, console: Console) -> bool:
    """Whether a stage must wait for upstream stages outside the selection (says which)."""
    missing = [d for d in plan.stages[key].deps if plan.status(d) != "cached"]
    if missing:
        console.print(f"[yellow]skip[/yellow] {key}: waiting for {', '.join(missing)} (run those cells first)")
    return bool(missing)


def said_done(plan: Plan, key: str, started: float, console: Console) -> None:
    console.print(f"[green]done[/green] {key} in {time.time() - started:.0f}s → {plan.folder(key)}")


def execute(plan: Plan, keys: list[str], env: Any, console: Console, title: str = "") -> dict[str, str]:
    """Run every selected stage that is not cached; returns each stage's outcome (cached, done, waiting)."""
    todo, outcome = announce(plan, keys, console, title)
    for number, key in enumerate(todo, start=1):
        if blocked(plan, key, console):
            outcome[key] = "waiting"
            continue
        console.rule(f"[{number}/{len(todo)}] {key}")
        started = time.time()
        run_stage(plan, key, env, console)
        gc.collect()  # the stage's model goes before the next one loads
        outcome[key] = "done"
        said_done(plan, key, started, console)
    return outcome
