"""Instruction difficulty for the length-controlled GLM, estimated from a pool of models' annotations.

AlpacaEval downloads a precomputed per-instruction difficulty at run time. We estimate it the way
AlpacaEval describes it (its notebook `instruction_difficulty.ipynb`, issues #284 and #346): one
joint logistic fit over every annotation of a pool of models against the same baseline, with per
model an intercept and a length slope, and per instruction a term shared by all models — that term
is the difficulty. The per-file GLM then fits its own coefficient on it, so only its shape matters.
The pool's mean length slope is kept too: it is the prior that stands in for AlpacaEval's
gamed-baseline regularisation (see `rtune.winrate.lc_glm`).

The table shipped with rtune (`resources/alpaca_eval_difficulty.json`) covers the 805 AlpacaEval
instructions, keyed by a hash of the exact instruction text; it says inside how it was made.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from rtune.errors import RtuneError
from rtune.io import atomic_write_json, check_output, read_json, sha256_file
from rtune.winrate.annotations import Annotation, read_annotations
from rtune.winrate.lc_glm import fit_soft_logistic, select_C, tanh_length_gap
from rtune.winrate.schema import DifficultySettings

PACKAGED_TABLE = "alpaca_eval_difficulty.json"


def instruction_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class DifficultyTable:
    difficulty: dict[str, float]  # instruction_key(text) -> difficulty
    length_slope: float  # the pool's mean length slope: the prior for per-file fits
    C: float  # L1 penalty of the joint fit
    provenance: dict[str, Any] = field(default_factory=dict)

    def for_instructions(self, instructions: Iterable[str]) -> np.ndarray | None:
        """Difficulty per instruction, or None unless every one of them is in the table."""
        keys = [instruction_key(text) for text in instructions]
        if not all(key in self.difficulty for key in keys):
            return None
        return np.array([self.difficulty[key] for key in keys])


def _usable_rows(name: str, annotations: Sequence[Annotation]) -> list[Annotation]:
    """Annotated rows with a non-empty model output (AlpacaEval's notebook drops empty ones)."""
    rows = [a for a in annotations if a.preference is not None]
    missing = next((i for i, a in enumerate(annotations, 1) if a.length_1 is None or a.length_2 is None), None)
    if missing is not None:
        raise RtuneError(f"{name}: record {missing}: no output texts or output_*_chars to measure lengths")
    return [a for a in rows if a.length_2 > 0]


def estimate_difficulty(pool: Mapping[str, Sequence[Annotation]], C: float | None = None) -> DifficultyTable:
    """Joint fit over `pool` (model name -> its annotations). C=None chooses the penalty by 5-fold CV (slow)."""
    if len(pool) < 2:
        raise RtuneError(f"estimating instruction difficulty needs annotations of several models, got {len(pool)}")
    keys: dict[str, int] = {}
    model_index, gaps, instruction_index, preferences = [], [], [], []
    for m, (name, model_annotations) in enumerate(pool.items()):
        rows = _usable_rows(name, model_annotations)
        model_index.append(np.full(len(rows), m))
        gaps.append(tanh_length_gap([a.length_1 for a in rows], [a.length_2 for a in rows]))
        instruction_index.append([keys.setdefault(instruction_key(a.instruction), len(keys)) for a in rows])
        preferences.append([a.score for a in rows])
    models, gap = np.concatenate(model_index), np.concatenate(gaps)
    instructions, p = np.concatenate(instruction_index), np.concatenate(preferences)

    n, n_models, rows = len(p), len(pool), np.arange(len(p))
    X = sparse.hstack(
        [
            sparse.csr_matrix((np.ones(n), (rows, models)), shape=(n, n_models)),  # per-model intercept
            sparse.csr_matrix((gap, (rows, models)), shape=(n, n_models)),  # per-model length slope
            sparse.csr_matrix((np.ones(n), (rows, instructions)), shape=(n, len(keys))),  # per-instruction term
        ]
    ).tocsr()
    weight = np.ones(n)
    C = select_C(X, p, weight) if C is None else C
    coef = fit_soft_logistic(X, p, weight, C)
    return DifficultyTable(
        difficulty={key: float(coef[2 * n_models + i]) for key, i in keys.items()},
        length_slope=float(np.mean(coef[n_models : 2 * n_models])),
        C=float(C),
        provenance={"models": list(pool)},
    )


def annotation_files(paths: Sequence[Path], exclude: Sequence[str] = ()) -> list[Path]:
    """The files named, and the .json files in the folders named, less those whose stem is excluded."""
    files = [f for p in paths for f in (sorted(Path(p).glob("*.json")) if Path(p).is_dir() else [Path(p)])]
    return [f for f in files if f.stem not in exclude]


def build_table(settings: DifficultySettings) -> DifficultyTable:
    """Estimate the table from the pool of files and write it with how it was made, so it can be remade."""
    s = settings
    check_output(s.out, inputs=s.paths)
    files = annotation_files(s.paths, s.exclude)
    if not files:
        raise RtuneError("no annotation files found in " + ", ".join(map(str, s.paths)))
    table = estimate_difficulty({f.stem: read_annotations(f) for f in files}, C=s.C)
    table.provenance.update(
        {
            "about": (
                "Per-instruction difficulty for rtune's length-controlled win rate (see rtune/winrate/difficulty.py)."
            ),
            "method": "joint L1 logistic fit on soft labels: per-model intercept + per-model tanh length slope "
            "+ per-instruction term; difficulty = the per-instruction term; length_slope = mean per-model slope",
            "command": shlex.join(
                [
                    "rtune",
                    "metrics",
                    "difficulty",
                    *map(str, s.paths),
                    "--out",
                    str(s.out),
                    *[arg for stem in s.exclude for arg in ("--exclude", stem)],
                    *(["--joint-c", str(s.C)] if s.C is not None else []),
                ]
            ),
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "inputs": {f.name: sha256_file(f)[:16] for f in files},
            **({"note": s.note} if s.note else {}),
        }
    )
    write_table(s.out, table)
    return table


def write_table(path: str | Path, table: DifficultyTable) -> None:
    atomic_write_json(
        path,
        {
            **table.provenance,
            "C": table.C,
            "length_slope": round(table.length_slope, 6),
            "difficulty": {key: round(value, 6) for key, value in table.difficulty.items()},
        },
    )


def read_table(path: str | Path) -> DifficultyTable:
    data = read_json(path)
    try:
        difficulty = {str(key): float(value) for key, value in data.pop("difficulty").items()}
        return DifficultyTable(difficulty, float(data.pop("length_slope")), float(data.pop("C")), data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RtuneError(f"{path}: not a difficulty table (expects 'difficulty', 'length_slope' and 'C')") from exc


@lru_cache(maxsize=1)
def packaged_table() -> DifficultyTable:
    """The shipped estimate for the 805 AlpacaEval instructions."""
    with resources.as_file(resources.files("rtune.resources") / PACKAGED_TABLE) as path:
        return read_table(path)
