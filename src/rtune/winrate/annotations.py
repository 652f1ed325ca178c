"""AlpacaEval's `annotations.json`: one pairwise judgement per instruction, read and written as is.

`output_1` is the reference (baseline) and `output_2` the model under evaluation; `preference` is 1
when the reference is preferred, 2 when the model is, anything between for a weighted judge, and
null when the judge gave no usable answer (0 is AlpacaEval's legacy spelling of a draw). A row's
score, `preference − 1` = P(model preferred), is what every metric averages; it and its inverse are
defined here once. Files trimmed of their texts may carry `output_1_chars`/`output_2_chars`
instead; unknown fields (`annotator`, `raw_completion`, …) are kept so a file round-trips unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rtune.config import describe_validation_error
from rtune.errors import RtuneError
from rtune.io import atomic_write_json, read_json, read_jsonl


def preference_from_score(p_model_wins: float) -> float:
    """The AlpacaEval preference in [1, 2] for P(model preferred); `Annotation.score` is its inverse."""
    return 1.0 + p_model_wins


class Annotation(BaseModel):
    model_config = ConfigDict(extra="allow")

    instruction: str
    preference: float | None = Field(strict=True)  # the key is required; null = not annotated
    output_1: str | None = None
    output_2: str | None = None
    generator_1: str | None = None
    generator_2: str | None = None
    output_1_chars: int | None = Field(None, ge=0)
    output_2_chars: int | None = Field(None, ge=0)
    dataset: str | None = None

    @field_validator("preference")
    @classmethod
    def _in_alpaca_eval_range(cls, value: float | None) -> float | None:
        if value is None or math.isnan(value):
            return None
        if value != 0 and not 1 <= value <= 2:
            raise ValueError(f"preference must be in [1, 2] (or 0 for a draw, or null), got {value}")
        return value

    @property
    def score(self) -> float | None:
        """P(model preferred): preference − 1, the legacy draw 0 counting as 1.5; None when not annotated."""
        if self.preference is None:
            return None
        return (1.5 if self.preference == 0 else self.preference) - 1

    @property
    def length_1(self) -> int | None:
        """Characters in the reference output: from the text when present, else `output_1_chars`."""
        return len(self.output_1) if self.output_1 is not None else self.output_1_chars

    @property
    def length_2(self) -> int | None:
        return len(self.output_2) if self.output_2 is not None else self.output_2_chars


def parse_annotations(rows: object, source: str | Path) -> list[Annotation]:
    if not isinstance(rows, list):
        raise RtuneError(f"{source}: expected a JSON array of annotation records, got {type(rows).__name__}")
    annotations = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise RtuneError(f"{source}: record {number}: expected a JSON object, got {type(row).__name__}")
        try:
            annotations.append(Annotation.model_validate(row))
        except ValidationError as exc:
            raise RtuneError(f"{source}: record {number}: {describe_validation_error(exc, whole='record')}") from exc
    return annotations


def read_annotations(path: str | Path) -> list[Annotation]:
    """Read an AlpacaEval annotations file (a JSON array; `.jsonl` is read line by line)."""
    path = Path(path)
    rows = read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
    return parse_annotations(rows, path)


def write_annotations(path: str | Path, annotations: Sequence[Annotation]) -> None:
    """Write atomically as a JSON array; fields never set (defaults) are left out, nulls that were set stay."""
    atomic_write_json(path, [annotation.model_dump(mode="json", exclude_unset=True) for annotation in annotations])
