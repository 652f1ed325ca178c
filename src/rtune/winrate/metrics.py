"""Win rates over AlpacaEval-style annotations, computed as AlpacaEval computes them.

Every annotated row scores `preference − 1` (0 = reference preferred, 1 = model preferred, ties
and weighted judgements in between; AlpacaEval's legacy draw `0` counts as 1.5). The win rate is
the mean score × 100 over rows with a preference, its standard error the SEM × 100; the discrete
win rate rounds each row to win / draw / loss first. On top: a seeded bootstrap 95% interval and
the length-controlled win rate (`rtune.winrate.lc_glm`), with instruction difficulty for the AlpacaEval
instruction set and the "minimal" formula elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rtune.errors import RtuneError
from rtune.io import atomic_write_json, check_output
from rtune.stats import bootstrap_draws, percentile_interval
from rtune.winrate.annotations import Annotation, read_annotations
from rtune.winrate.difficulty import DifficultyTable, packaged_table, read_table
from rtune.winrate.lc_glm import MIN_ROWS, fit_length_controlled
from rtune.winrate.schema import WinRateReport, WinrateSettings


def preference_scores(annotations: Sequence[Annotation]) -> np.ndarray:
    """`Annotation.score` (preference − 1, in [0, 1]) per annotated row."""
    return np.array([a.score for a in annotations if a.score is not None], dtype=float)


def bootstrap_ci(
    scores: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean score × 100 over resampled rows; NaN for no rows."""
    low, high = percentile_interval(bootstrap_draws(scores, n_resamples, seed) * 100, level)
    return (low, high) if low is not None else (float("nan"), float("nan"))


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


def add_length_controlled(
    report: WinRateReport, annotations: Sequence[Annotation], source: str, table: DifficultyTable
) -> WinRateReport:
    """Fill the LC fields: with difficulty when `table` covers every instruction, else the minimal formula."""
    rows = [a for a in annotations if a.preference is not None]
    unmeasured = next((i for i, a in enumerate(annotations, 1) if a.length_1 is None or a.length_2 is None), None)
    if unmeasured is not None:
        raise RtuneError(
            f"{source}: record {unmeasured}: the length-controlled win rate needs output texts or "
            "output_1_chars/output_2_chars (skip it with --no-lc)"
        )
    if len(rows) < MIN_ROWS:
        return report.model_copy(update={"lc_note": f"needs at least {MIN_ROWS} annotated rows, found {len(rows)}"})
    difficulty = table.for_instructions(a.instruction for a in rows)
    result = fit_length_controlled(
        preference_scores(rows),
        np.array([a.length_1 for a in rows]),
        np.array([a.length_2 for a in rows]),
        difficulty=difficulty,
        length_prior=table.length_slope if difficulty is not None else None,
    )
    note = (
        None
        if difficulty is not None
        else "instructions outside the difficulty table: formula without instruction difficulty"
    )
    return report.model_copy(
        update={
            "length_controlled_winrate": result.win_rate,
            "lc_standard_error": result.standard_error,
            "lc_variant": result.variant,
            "lc_note": note,
            "lc_coefficients": result.coefficients,
        }
    )


def summarize(
    annotations: Sequence[Annotation],
    source: str,
    *,
    length_controlled: bool = True,
    table: DifficultyTable | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> WinRateReport:
    """All metrics of one annotations file; `table` defaults to the packaged AlpacaEval difficulty."""
    report = win_rate_report(annotations, n_resamples=n_resamples, seed=seed)
    if not length_controlled:
        return report
    return add_length_controlled(report, annotations, source, table if table is not None else packaged_table())


def summarize_files(settings: WinrateSettings) -> dict[str, WinRateReport]:
    """The metrics of each file, keyed by its path as given; also written to `settings.out` when set."""
    s = settings
    if s.out is not None:
        check_output(s.out, inputs=[*s.files, s.difficulty])
    table = read_table(s.difficulty) if s.difficulty is not None else None
    reports = {
        str(path): summarize(
            read_annotations(path),
            str(path),
            length_controlled=s.length_controlled,
            table=table,
            n_resamples=s.n_resamples,
            seed=s.seed,
        )
        for path in s.files
    }
    empty = next((path for path, report in reports.items() if report.n == 0), None)
    if empty is not None:
        raise RtuneError(f"{empty}: no row has a preference, so there is no win rate")
    if s.out is not None:
        atomic_write_json(s.out, {path: report.model_dump(mode="json") for path, report in reports.items()})
    return reports
