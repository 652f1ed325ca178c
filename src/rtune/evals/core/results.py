"""Results in lm-eval's shape: per-task metrics with standard errors, MMLU groups, both key styles.

lm-eval writes `"acc,none"` / `"acc_stderr,none"` (metric, filter); tools that read older files
expect plain `acc` / `acc_stderr`. Every entry carries both. Standard errors are lm-eval's: the
sample standard deviation (n - 1) over sqrt(n) per task, and for a group weighted by size the
pooled standard error of its members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rtune.evals.core.tasks import MMLU_CATEGORY


@dataclass(frozen=True)
class UnitResult:
    """Metrics of one evaluated unit (a task, or one MMLU subject), per-item values kept for aggregation."""

    name: str
    values: dict[str, list[float]]  # metric key as lm-eval names it ("acc", "exact_match,strict-match") -> per item
    n_original: int
    n_shot: int
    version: str = "1.0"
    samples: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(next(iter(self.values.values()), []))


def mean_stderr(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    if n == 0:
        return math.nan, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def pooled_stderr(stderrs: list[float | None], sizes: list[int]) -> float | None:
    """lm-eval's pooled_sample_stderr: the stderr of the size-weighted mean of groups of items."""
    if any(s is None for s in stderrs) or sum(sizes) <= len(sizes):
        return None
    variance = sum((n - 1) * s**2 * n for s, n in zip(stderrs, sizes, strict=True)) / (sum(sizes) - len(sizes))
    return math.sqrt(variance / sum(sizes))


def _split_key(key: str) -> tuple[str, str]:
    metric, _, filter_name = key.partition(",")
    return metric, filter_name or "none"


def entry(name: str, metrics: dict[str, tuple[float, float | None]]) -> dict:
    """{"alias", "acc,none", "acc_stderr,none", "acc", "acc_stderr", ...} from key -> (value, stderr).

    Plain keys are the metric name for the "none" filter and `metric_filter` otherwise (e.g.
    `exact_match_flexible-extract`); GSM8K's strict match also answers to plain `exact_match`.
    """
    out: dict = {"alias": name}
    for key, (value, stderr) in metrics.items():
        metric, filter_name = _split_key(key)
        out[f"{metric},{filter_name}"] = value
        out[f"{metric}_stderr,{filter_name}"] = stderr
        plain = metric if filter_name == "none" else f"{metric}_{filter_name}"
        out[plain], out[f"{plain}_stderr"] = value, stderr
        if filter_name == "strict-match":
            out[metric], out[f"{metric}_stderr"] = value, stderr
    return out


def unit_entry(unit: UnitResult) -> dict:
    return entry(unit.name, {key: mean_stderr(values) for key, values in unit.values.items()})


Scores = dict[str, tuple[float, float | None]]  # metric key -> (value, stderr)


def _group(members: list[tuple[Scores, int]]) -> tuple[Scores, int]:
    """Size-weighted mean and pooled stderr of members given as (key -> (value, stderr), size)."""
    size = sum(n for _, n in members)
    keys = [key for key in members[0][0] if all(key in m for m, _ in members)]
    metrics = {}
    for key in keys:
        value = sum(m[key][0] * n for m, n in members) / size
        metrics[key] = (value, pooled_stderr([m[key][1] for m, _ in members], [n for _, n in members]))
    return metrics, size


def mmlu_groups(units: list[UnitResult]) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """lm-eval's MMLU tree: subjects -> stem/other/social_sciences/humanities -> mmlu, each weighted by size."""
    subjects = {u.name.removeprefix("mmlu_"): u for u in units if u.name.startswith("mmlu_") and u.n > 0}
    groups, tree = {}, {}
    category_members = []
    for category in ("humanities", "other", "social_sciences", "stem"):
        names = [s for s in MMLU_CATEGORY if MMLU_CATEGORY[s] == category and s in subjects]
        if not names:
            continue
        members = [({k: mean_stderr(v) for k, v in subjects[s].values.items()}, subjects[s].n) for s in names]
        metrics, size = _group(members)
        groups[f"mmlu_{category}"] = entry(f"mmlu_{category}", metrics)
        tree[f"mmlu_{category}"] = [f"mmlu_{s}" for s in names]
        category_members.append((metrics, size))
    if category_members:
        metrics, _ = _group(category_members)
        groups = {"mmlu": entry("mmlu", metrics), **groups}
        tree = {"mmlu": list(tree), **tree}
    return groups, tree


ARC_GROUP, ARC_MEMBERS = "ai2_arc", ("arc_easy", "arc_challenge")


def arc_group(results: dict[str, dict], sizes: dict[str, int]) -> dict | None:
    """The paper's one ARC column: ARC-Easy and ARC-Challenge as one set, each weighted by its items.

    That is lm-eval's `ai2_arc` group until July 2024 (0.4.3: the size-weighted mean, pooled stderr). From
    0.4.4 on, the version the paper needed for gsm8k_cot_llama, `ai2_arc` is a tag that reports the two
    tasks apart, so the paper combined them itself; accuracy over all ARC questions is this. Read from
    finished entries (either engine's); None unless both tasks ran.
    """
    if not all(name in results and sizes.get(name) for name in ARC_MEMBERS):
        return None
    members = [
        (
            {
                key: (results[name][key], results[name].get(f"{key}_stderr"))
                for key in ("acc", "acc_norm")
                if isinstance(results[name].get(key), float)
            },
            sizes[name],
        )
        for name in ARC_MEMBERS
    ]
    metrics, _ = _group(members)
    return entry(ARC_GROUP, metrics)


def results_document(units: list[UnitResult], config: dict, task_configs: dict, seconds: float) -> dict:
    """The whole results JSON, keyed like lm-eval's simple_evaluate output."""
    groups, tree = mmlu_groups(units)
    tasks = {u.name: unit_entry(u) for u in units}
    arc = arc_group(tasks, {u.name: u.n for u in units})
    if arc is not None:
        groups, tree = {**groups, ARC_GROUP: arc}, {**tree, ARC_GROUP: list(ARC_MEMBERS)}
    results = {**groups, **tasks}
    return {
        "results": results,
        "groups": groups,
        "group_subtasks": tree,
        "configs": task_configs,
        "versions": {u.name: u.version for u in units},
        "n-shot": {u.name: u.n_shot for u in units},
        "n-samples": {u.name: {"original": u.n_original, "effective": u.n} for u in units},
        "config": config,
        "total_evaluation_time_seconds": round(seconds, 1),
    }
