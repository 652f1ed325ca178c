"""The typed view of a core results document, for the CLI summary, the pipeline and the report.

The JSON file stays lm-eval's shape (what other tools read); `CoreReport` is what Python reads:
per task, group (MMLU's, and ARC-Easy + ARC-Challenge as the paper's one ARC column) and MMLU subject
the metrics with standard errors and item counts. The headline metric is the paper's: acc (lm-eval's
`acc`, not `acc_norm`, in its tables), GSM8K's strict exact match. It is built from the document alone,
so `CoreReport.load(path)` gives back what `run` returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from rtune.io import read_json


def samples_path(out: Path) -> Path:
    """Where the per-item samples of a results JSON live: `<out stem>_samples.jsonl` beside it."""
    return out.with_name(out.stem + "_samples.jsonl")


class Metric(BaseModel):
    value: float
    stderr: float | None = None  # None for a single item, or where lm-eval reported none


class TaskScores(BaseModel):
    """One entry of the results; a metric the task does not report is None."""

    kind: Literal["task", "group", "subtask"]  # subtask: a member of a group not asked for by name (an MMLU subject)
    n: int | None  # items scored (a group: its members'); None where the document does not say
    acc: Metric | None = None
    acc_norm: Metric | None = None
    exact_match: Metric | None = None  # GSM8K: strict match ("The final answer is N")
    exact_match_flexible: Metric | None = None  # GSM8K: the last number in the reply


class CoreReport(BaseModel):
    """What a core evaluation wrote and scored."""

    document: Path
    samples: Path
    engine: Literal["builtin", "lm-eval"]
    protocol: Literal["paper", "lm-eval"] | None = None  # None: written before protocols were recorded
    chat_template: bool
    seconds: float | None
    n_shot: dict[str, int]
    results: dict[str, TaskScores]  # in the document's order: MMLU groups first, then units

    @property
    def headline(self) -> dict[str, TaskScores]:
        """Tasks and groups, without the members of groups not asked for by name (the 57 MMLU subjects)."""
        return {name: scores for name, scores in self.results.items() if scores.kind != "subtask"}

    @classmethod
    def from_document(cls, document: dict, path: Path) -> CoreReport:
        groups, tree = document.get("groups", {}), document.get("group_subtasks", {})
        config = document.get("config", {})
        members = {member for names in tree.values() for member in names} - set(config.get("tasks", []))
        sizes = {name: counts.get("effective") for name, counts in document.get("n-samples", {}).items()}

        def size(name: str) -> int | None:
            if name in groups and tree.get(name):
                parts = [size(member) for member in tree[name]]
                return None if None in parts else sum(parts)  # type: ignore[arg-type]
            return sizes.get(name)

        def kind(name: str) -> str:
            return "group" if name in groups else "subtask" if name in members else "task"

        results = {
            name: TaskScores(
                kind=kind(name),
                n=size(name),
                acc=_metric(entry, "acc"),
                acc_norm=_metric(entry, "acc_norm"),
                exact_match=_metric(entry, "exact_match"),
                exact_match_flexible=_metric(entry, "exact_match_flexible-extract"),
            )
            for name, entry in document["results"].items()
        }
        return cls(
            document=path,
            samples=samples_path(path),
            engine=config.get("engine", "builtin"),
            protocol=config.get("protocol"),
            chat_template=bool(config.get("chat_template")),
            seconds=document.get("total_evaluation_time_seconds"),
            n_shot=document.get("n-shot", {}),
            results=results,
        )

    @classmethod
    def load(cls, path: str | Path) -> CoreReport:
        """The report of a results JSON written by `run` (either engine)."""
        return cls.from_document(read_json(Path(path)), Path(path))


def _metric(entry: dict, key: str) -> Metric | None:
    """The plain-key metric of a results entry (`acc`, `acc_stderr`), None when absent or not a number."""
    value = entry.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return Metric(value=value, stderr=entry.get(f"{key}_stderr"))
