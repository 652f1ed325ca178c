"""Means of aspect scores with percentile-bootstrap 95% intervals, per group of scored items.

Items are resampled as units, so an item's aspect scores stay together and the intervals of the
overall means account for the aspects being correlated. Statistics that cannot be computed (no
item scored on an aspect) are absent from summary.json, not null.
"""

from __future__ import annotations

from pydantic import BaseModel, model_serializer

from rtune.judges.prompts import ASPECTS

SAFETY = "safety"


class Mean(BaseModel):
    mean: float
    ci95: tuple[float | None, float | None]  # (None, None) when no resample was finite
    n: int


class GroupSummary(BaseModel):
    n: int  # items in the group
    aspects: dict[str, Mean] | None = None  # per aspect scored on at least one item
    overall: Mean | None = None  # mean of the five aspect means
    overall_with_safety: Mean | None = None  # mean of six, when safety was scored too

    @model_serializer(mode="wrap")
    def _present_only(self, handler) -> dict:
        return {name: value for name, value in handler(self).items() if value is not None}


def summarise_group(rows: list[dict], samples: int, seed: int) -> GroupSummary:
    """Per-aspect means, `overall` and, when safety was scored, `overall_with_safety`, with their intervals."""
    import numpy as np  # loaded here, so importing the judges (and the CLI) stays fast

    from rtune.stats import bootstrap_draws, percentile_interval

    names = (*ASPECTS, SAFETY)
    matrix = np.array([[row["scores"].get(name, np.nan) for name in names] for row in rows], dtype=float).reshape(
        len(rows), len(names)
    )
    counts = np.isfinite(matrix).sum(axis=0)
    present = [j for j in range(len(names)) if counts[j] > 0]
    if not present:
        return GroupSummary(n=len(rows))
    points = np.nanmean(matrix[:, present], axis=0)
    boots = bootstrap_draws(matrix[:, present], samples, seed)  # (samples, present)

    def mean(point: float, draws, n: int) -> Mean:
        return Mean(mean=point, ci95=percentile_interval(draws), n=n)

    aspects = {
        names[j]: mean(float(points[column]), boots[:, column], int(counts[j])) for column, j in enumerate(present)
    }
    overall = {}
    for label, wanted in (("overall", ASPECTS), ("overall_with_safety", names)):
        columns = [present.index(names.index(name)) for name in wanted if names.index(name) in present]
        if len(columns) == len(wanted):
            overall[label] = mean(float(points[columns].mean()), boots[:, columns].mean(axis=1), len(rows))
    return GroupSummary(n=len(rows), aspects=aspects, **overall)


def summarise_categories(rows: list[dict], samples: int, seed: int) -> dict[str, GroupSummary]:
    """All items together (`all`), then each category alone."""
    groups = {"all": summarise_group(rows, samples, seed)}
    for category in sorted({row["category"] for row in rows}):
        groups[category] = summarise_group([row for row in rows if row["category"] == category], samples, seed)
    return groups
