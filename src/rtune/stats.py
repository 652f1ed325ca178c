"""The percentile bootstrap behind every confidence interval rtune reports.

Items are resampled with replacement; a row of a 2-D array is one item, so the columns of an item
(the aspects one answer was scored on) stay together. Missing values (NaN) are left out of each
resampled mean, so a column observed on few items still gets an interval.
"""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import BaseModel


class Interval(BaseModel):
    value: float
    ci_low: float | None
    ci_high: float | None


def bootstrap_draws(values, samples: int = 2000, seed: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Means of `samples` resamples of the items: shape (samples,) for a vector, (samples, k) for an (n, k) array."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return np.full((samples, *data.shape[1:]), np.nan)
    rng = rng if rng is not None else np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(samples, len(data)))
    with warnings.catch_warnings():  # a resample can miss every observed value of a sparse column: that draw is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(data[picks], axis=1)


def percentile_interval(draws, level: float = 0.95) -> tuple[float | None, float | None]:
    """The central `level` interval of the finite draws; (None, None) when there are none."""
    finite = np.asarray(draws, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None, None
    tail = round((1 - level) / 2 * 100, 10)  # 2.5, not 2.5000000000000022
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean(values, samples: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean of the items with its percentile-bootstrap interval."""
    data = np.asarray(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(np.nanmean(data)) if data.size else float("nan")
    low, high = percentile_interval(bootstrap_draws(data, samples, seed), level)
    return Interval(value=value, ci_low=low, ci_high=high)
