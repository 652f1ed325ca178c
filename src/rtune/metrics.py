"""Win rates over AlpacaEval-style annotations, computed as AlpacaEval computes them.

Every annotated row scores `preference − 1` (0 = reference preferred, 1 = model preferred, ties
and weighted judgements in between; AlpacaEval's legacy draw `0` counts as 1.5). The win rate is
the mean score × 100 over rows with a preference, its standard error the SEM × 100; the discrete
win rate rounds each row to win / draw / loss first. On top: a seeded bootstrap 95% interval and
the length-controlled win rate (`rtune.lc_glm`), with instruction difficulty for the AlpacaEval
instruction set and the "minimal" formula elsewhere.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel

from rtune.annotations import Annotation
from rtune.difficulty import DifficultyTable, packaged_table
from rtune.errors import RtuneError
from rtune.lc_glm import MIN_ROWS, fit_length_controlled


class WinRateReport(BaseModel):
    generator: str | None  # generator_2 when the file has a single one
    baseline: str | None  # generator_1 likewise
    n: int  # rows with a preference
    n_missing: int  # rows without one (failed or skipped judgements)
    win_rate: float
    standard_error: float
    ci_low: float  # bootstrap 95% interval of the win rate
    ci_high: float
    discrete_win_rate: float
    n_wins: int
    n_wins_base: int
    n_draws: int
    n_total: int
    avg_length: float | None  # mean characters of the model's outputs
    length_controlled_winrate: float | None = None
    lc_standard_error: float | None = None
    lc_variant: str | None = None  # "with_difficulty" (AlpacaEval instructions) or "minimal"
    lc_note: str | None = None
    lc_coefficients: dict[str, float] | None = None  # the fitted GLM, for inspection


def preference_scores(annotations: Sequence[Annotation]) -> np.ndarray:
    """preference − 1 per annotated row, in [0, 1]."""
    return np.array([(1.5 if a.preference == 0 else a.preference) - 1
                     for a in annotations if a.preference is not None], dtype=float)


def bootstrap_ci(scores: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean score × 100 over resampled rows."""
    if len(scores) == 0:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(n_resamples, len(scores)))
    means = scores[draws].mean(axis=1) * 100
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _single(values: set[str | None]) -> str | None:
    return values.pop() if len(values) == 1 else None


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean() * 100) if len(values) else float("nan")


def win_rate_report(annotations: Sequence[Annotation], *, n_resamples: int = 1000, seed: int = 0) -> WinRateReport:
    scores = preference_scores(annotations)
    discrete = np.round(scores)  # each row becomes a loss (0) or a win (1); an exact tie stays 0.5
    discrete[scores == 0.5] = 0.5
    low, high = bootstrap_ci(scores, n_resamples, seed)
    lengths = [a.length_2 for a in annotations if a.length_2 is not None]
    return WinRateReport(
        generator=_single({a.generator_2 for a in annotations}),
        baseline=_single({a.generator_1 for a in annotations}),
        n=len(scores),
        n_missing=len(annotations) - len(scores),
        win_rate=_mean_or_nan(scores),
        standard_error=float(scores.std(ddof=1) / np.sqrt(len(scores)) * 100) if len(scores) > 1 else float("nan"),
        ci_low=low,
        ci_high=high,
        discrete_win_rate=_mean_or_nan(discrete),
        n_wins=int((scores > 0.5).sum()),
        n_wins_base=int((scores < 0.5).sum()),
        n_draws=int((scores == 0.5).sum()),
        n_total=len(scores),
        avg_length=float(np.mean(lengths)) if lengths else None,
    )


def add_length_controlled(report: WinRateReport, annotations: Sequence[Annotation], source: str,
                          table: DifficultyTable) -> WinRateReport:
    """Fill the LC fields: with difficulty when `table` covers every instruction, else the minimal formula."""
    rows = [a for a in annotations if a.preference is not None]
    unmeasured = next((i for i, a in enumerate(annotations, 1) if a.length_1 is None or a.length_2 is None), None)
    if unmeasured is not None:
        raise RtuneError(f"{source}: record {unmeasured}: the length-controlled win rate needs output texts or "
                         "output_1_chars/output_2_chars (skip it with --no-lc)")
    if len(rows) < MIN_ROWS:
        return report.model_copy(update={"lc_note": f"needs at least {MIN_ROWS} annotated rows, found {len(rows)}"})
    difficulty = table.for_instructions(a.instruction for a in rows)
    result = fit_length_controlled(
        preference_scores(rows), np.array([a.length_1 for a in rows]), np.array([a.length_2 for a in rows]),
        difficulty=difficulty, length_prior=table.length_slope if difficulty is not None else None)
    note = None if difficulty is not None else "instructions outside the difficulty table: formula without instruction difficulty"
    return report.model_copy(update={"length_controlled_winrate": result.win_rate,
                                     "lc_standard_error": result.standard_error,
                                     "lc_variant": result.variant, "lc_note": note,
                                     "lc_coefficients": result.coefficients})


def summarize(annotations: Sequence[Annotation], source: str, *, length_controlled: bool = True,
              table: DifficultyTable | None = None, n_resamples: int = 1000, seed: int = 0) -> WinRateReport:
    """All metrics of one annotations file; `table` defaults to the packaged AlpacaEval difficulty."""
    report = win_rate_report(annotations, n_resamples=n_resamples, seed=seed)
    if not length_controlled:
        return report
    return add_length_controlled(report, annotations, source, table if table is not None else packaged_table())
