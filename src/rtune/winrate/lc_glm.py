"""AlpacaEval 2's length-controlled win rate: a logistic GLM per file, read at zero length difference.

The judge's preference for the model's output on instruction x is modelled as

    logit P = w_len · tanh(std_delta_len) + ψ · instruction_difficulty(x) + θ · not_gamed_baseline

with no intercept (θ plays that role). Preferences are probabilities, so each row is fitted twice —
label 1 weighted by p and label 0 weighted by 1 − p — with an L1 penalty (liblinear) whose strength
is chosen by 5-fold cross-validation over rows on the continuous log loss, as AlpacaEval does. The
length-controlled win rate is the mean prediction with the length term set to zero.

AlpacaEval also mixes in annotations of its baseline against verbose/concise versions of itself
(weight λ = 0.2), which pulls w_len towards the judge's pure length sensitivity. That data is a
download we cannot make; the same pull is obtained here with pseudo-rows whose only feature is the
length term and whose targets follow a prior slope (estimated from a pool of models, see
`rtune.winrate.difficulty`), at the same weight λ. Without difficulty values (custom instruction sets) the
"minimal" formula applies: no difficulty term and no prior, as AlpacaEval's `length_controlled_minimal`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse

N_SPLITS = 5
C_GRID = np.logspace(-4, 4, 10)  # LogisticRegressionCV's default grid, which AlpacaEval uses
PRIOR_WEIGHT = 0.2  # AlpacaEval's regularize_to_baseline_lambda
RANDOM_STATE = 123
MIN_ROWS = 2 * N_SPLITS


@dataclass(frozen=True)
class LengthControlled:
    win_rate: float  # percent
    standard_error: float  # SEM of the per-instruction predictions, percent
    variant: str  # "with_difficulty" or "minimal"
    coefficients: dict[str, float]  # named as in AlpacaEval's saved GLM weights


def logistic(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -x))


def tanh_length_gap(length_1: np.ndarray, length_2: np.ndarray) -> np.ndarray:
    """tanh of the reference-minus-model character gap over its standard deviation within the file."""
    delta = np.asarray(length_1, dtype=float) - np.asarray(length_2, dtype=float)
    spread = delta.std(ddof=1) if len(delta) > 1 else 0.0
    return np.tanh(delta / spread) if spread > 0 else np.zeros_like(delta)


def fit_soft_logistic(X, p: np.ndarray, weight: np.ndarray, C: float) -> np.ndarray:
    """L1 logistic regression, no intercept, on probabilistic targets p (rows duplicated as 1 and 0)."""
    from sklearn.linear_model import LogisticRegression  # imported here: scikit-learn takes seconds to load

    stacked = sparse.vstack([X, X]).tocsr() if sparse.issparse(X) else np.vstack([X, X])
    labels = np.r_[np.ones(len(p)), np.zeros(len(p))]
    sample_weight = np.r_[p * weight, (1 - p) * weight]
    keep = sample_weight > 0
    if len(np.unique(labels[keep])) < 2:  # e.g. a CV fold where the model never wins: nothing to fit
        return np.zeros(X.shape[1])
    model = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=RANDOM_STATE)
    model.fit(stacked[keep], labels[keep], sample_weight=sample_weight[keep])
    return model.coef_[0]


def soft_log_loss(coef: np.ndarray, X, p: np.ndarray, weight: np.ndarray) -> float:
    q = np.clip(logistic(X @ coef), 1e-15, 1 - 1e-15)
    return float(-np.mean(weight * (p * np.log(q) + (1 - p) * np.log(1 - q))))


def select_C(X, p: np.ndarray, weight: np.ndarray, grid=C_GRID, n_splits: int = N_SPLITS) -> float:
    """The grid value with the best mean held-out log loss over 5 folds of rows (a row's two copies stay together)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GroupKFold

    folds = list(GroupKFold(n_splits=n_splits).split(np.zeros(len(p)), groups=np.arange(len(p))))
    with warnings.catch_warnings():  # the weakest penalties need not converge on separable folds
        warnings.simplefilter("ignore", ConvergenceWarning)
        losses = [
            np.mean(
                [
                    soft_log_loss(
                        fit_soft_logistic(X[train], p[train], weight[train], C), X[test], p[test], weight[test]
                    )
                    for train, test in folds
                ]
            )
            for C in grid
        ]
    return float(grid[int(np.argmin(losses))])


def fit_length_controlled(
    preference: np.ndarray,
    length_1: np.ndarray,
    length_2: np.ndarray,
    difficulty: np.ndarray | None = None,
    length_prior: float | None = None,
    prior_weight: float = PRIOR_WEIGHT,
) -> LengthControlled:
    """Length-controlled win rate of one file.

    `preference` is P(model preferred) in [0, 1] per annotated row; lengths are characters of the
    reference (1) and model (2) outputs. `difficulty` (one value per row) selects the full formula;
    `length_prior` adds the pseudo-rows that stand in for AlpacaEval's gamed-baseline annotations.
    """
    p = np.asarray(preference, dtype=float)
    if len(p) < MIN_ROWS:
        raise ValueError(f"the length-controlled GLM needs at least {MIN_ROWS} annotated rows, got {len(p)}")
    variant = "with_difficulty" if difficulty is not None else "minimal"
    if np.ptp(p) == 0:  # one outcome everywhere (e.g. a parsed judge and a model that always loses)
        return LengthControlled(float(p[0] * 100), 0.0, variant, {})
    gap = tanh_length_gap(length_1, length_2)
    names = ["np.tanh(std_delta_len)"]
    columns = [gap]
    if difficulty is not None:
        names.append("instruction_difficulty")
        columns.append(np.asarray(difficulty, dtype=float))
    names.append("not_gamed_baseline.astype(float)")
    columns.append(np.ones(len(p)))
    X = np.column_stack(columns)
    weight = np.ones(len(p))
    at_equal_length = X.copy()
    at_equal_length[:, 0] = 0.0

    if length_prior is not None:
        pseudo = np.zeros_like(X)
        pseudo[:, 0] = gap
        X = np.vstack([pseudo, X])
        p = np.r_[logistic(length_prior * gap), p]
        weight = np.r_[np.full(len(gap), prior_weight), weight]

    C = select_C(X, p, weight)
    coef = fit_soft_logistic(X, p, weight, C)
    predicted = logistic(at_equal_length @ coef)
    return LengthControlled(
        win_rate=float(predicted.mean() * 100),
        standard_error=float(predicted.std(ddof=1) / np.sqrt(len(predicted)) * 100),
        variant=variant,
        coefficients=dict(zip(names, map(float, coef), strict=False)),
    )
