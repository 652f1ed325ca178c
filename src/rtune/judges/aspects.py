"""Multi-aspect scoring, JustEval-style: 1–5 scores with rationales, read strictly.

Items whose category is `safety` get one safety score; all others get helpfulness, clarity,
factuality, depth and engagement, in one JSON answer. An answer is accepted only when every
aspect it must carry is there with a score in 1..5 (JustEval itself falls back to 5 on a parse
miss, which inflates scores silently); unreadable answers are retried, and items that never give
a readable answer are excluded and counted. Summary: per category and overall, the mean of each
aspect and the mean of the aspect means, with percentile bootstrap 95% intervals.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator, model_validator

from rtune.data.sources import read_rows
from rtune.errors import RtuneError
from rtune.generation import DecodingParams, GenerationRequest
from rtune.io import append_jsonl, stable_hash
from rtune.judges.caller import JudgeCaller, attempt_params, finished_items
from rtune.judges.prompts import ASPECTS, PROMPT_VERSION, aspects_messages

SAFETY = "safety"
DEFAULT_CATEGORY = "regular"  # JustEval's name for the non-safety items
LOG_FILE = "scores.jsonl"  # per-item results; appended as items finish, rewritten in input order at the end


class AspectsSettings(BaseModel):
    judge: str
    max_attempts: int = Field(3, ge=1)
    max_new_tokens: int = Field(1024, ge=16)
    safety_category: str = SAFETY
    bootstrap_samples: int = Field(2000, ge=100)
    seed: int = 0

    @property
    def annotator(self) -> str:
        return f"rtune_aspects:{self.judge}"


# ------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------

_SCORE_TEXT = re.compile(r"^\s*([1-5])(?:\.0+)?\s*(?:/\s*5|out of 5)?\s*$", re.IGNORECASE)


class AspectScore(BaseModel):
    rationale: str = Field("", validation_alias=AliasChoices("rationale", "reason", "explanation"))
    score: int = Field(ge=1, le=5)

    @model_validator(mode="before")
    @classmethod
    def _bare_score(cls, value: Any) -> Any:
        """`"depth": 4` is a score without a rationale; accept it rather than lose the item."""
        return value if isinstance(value, dict) else {"score": value}

    @field_validator("score", mode="before")
    @classmethod
    def _score_number(cls, value: Any) -> Any:
        """Integers, integral floats, and strings like "4", "4/5", "4 out of 5"; nothing else."""
        if isinstance(value, bool):
            raise ValueError("a score is a number, not a boolean")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            match = _SCORE_TEXT.match(value)
            if not match:
                raise ValueError(f"score {value!r} is not an integer from 1 to 5")
            return int(match.group(1))
        return value


def _json_objects(text: str):
    """Every JSON object in the answer: the whole text, fenced blocks, then any `{...}` found in prose."""
    stripped = text.strip()
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL | re.IGNORECASE)
    for candidate in [stripped, *fenced]:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def parse_scores(text: str, aspects: tuple[str, ...]) -> dict[str, AspectScore] | None:
    """The first JSON object in `text` that scores every aspect validly (keys case-insensitive), else None."""
    for obj in _json_objects(text):
        lowered = {str(key).strip().lower(): value for key, value in obj.items()}
        if not all(aspect in lowered for aspect in aspects):
            continue
        try:
            return {aspect: AspectScore.model_validate(lowered[aspect]) for aspect in aspects}
        except ValidationError:
            continue
    return None


# ------------------------------------------------------------------------------------------
# Inputs and the run
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredItem:
    id: str
    instruction: str
    output: str
    generator: str
    category: str


def read_items(path: Path, limit: int | None = None) -> list[ScoredItem]:
    """JustEval/AlpacaEval-shaped rows: `instruction`, `output`, optional `id`, `generator`, `category`."""
    items: list[ScoredItem] = []
    seen: set[str] = set()
    for number, row in enumerate(read_rows(Path(path)), start=1):
        for name in ("instruction", "output"):
            if not isinstance(row.get(name), str):
                raise RtuneError(f"{path}: row {number}: expected a string '{name}'")
        item_id = str(row.get("id", number - 1))
        if item_id in seen:
            raise RtuneError(f"{path}: row {number}: id {item_id!r} appears twice")
        seen.add(item_id)
        items.append(ScoredItem(id=item_id, instruction=row["instruction"], output=row["output"],
                                generator=str(row.get("generator") or Path(path).stem),
                                category=str(row.get("category") or DEFAULT_CATEGORY)))
    if not items:
        raise RtuneError(f"{path}: no outputs")
    return items[:limit] if limit is not None else items


def aspects_for(item: ScoredItem, settings: AspectsSettings) -> tuple[str, ...]:
    return (SAFETY,) if item.category == settings.safety_category else ASPECTS


@dataclass
class AspectsRun:
    rows: list[dict]  # per item, input order
    failures: list[dict] = field(default_factory=list)
    resumed: int = 0


def _item_key(item: ScoredItem, settings: AspectsSettings, fingerprint: str) -> str:
    return stable_hash({"id": item.id, "instruction": item.instruction, "output": item.output, "judge": fingerprint,
                        "aspects": aspects_for(item, settings), "prompt": PROMPT_VERSION})


def _request(item: ScoredItem, settings: AspectsSettings, attempt: int) -> GenerationRequest:
    params = attempt_params(DecodingParams(max_new_tokens=settings.max_new_tokens, temperature=0.0), attempt)
    safety = aspects_for(item, settings) == (SAFETY,)
    return GenerationRequest(messages=aspects_messages(item.instruction, item.output, safety), params=params)


def score_items(items: list[ScoredItem], settings: AspectsSettings, caller: JudgeCaller, log_path: Path,
                on_settled: Callable[[int], None] = lambda count: None) -> AspectsRun:
    """Score every item not already in the log; finished items are appended to the log at once."""
    fingerprint = caller.generator.fingerprint
    keys = [_item_key(item, settings, fingerprint) for item in items]
    done = finished_items(log_path)
    todo = [index for index, key in enumerate(keys) if key not in done]
    run = AspectsRun(rows=[], resumed=len(items) - len(todo))
    on_settled(run.resumed)
    answers = caller.ask(len(todo), lambda j, attempt: _request(items[todo[j]], settings, attempt),
                         lambda j, result: parse_scores(result.text, aspects_for(items[todo[j]], settings)))
    for answer in answers:
        index = todo[answer.index]
        item = items[index]
        if answer.value is None:
            last = answer.result.text if answer.result is not None else ""
            run.failures.append({"id": item.id, "category": item.category, "attempts": answer.attempts, "last_answer": last[:500]})
        else:
            row = {"id": item.id, "instruction": item.instruction, "category": item.category, "generator": item.generator,
                   "scores": {name: score.score for name, score in answer.value.items()},
                   "rationales": {name: score.rationale for name, score in answer.value.items()},
                   "attempts": answer.attempts, "annotator": settings.annotator, "prompt_version": PROMPT_VERSION, "key": keys[index]}
            append_jsonl(log_path, row)
            done[keys[index]] = row
        on_settled(1)
    run.rows = [done[key] for key in keys if key in done]
    return run


# ------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------


def _interval(point: float, boots, n: int) -> dict:
    import numpy as np

    finite = boots[np.isfinite(boots)]
    low, high = (np.percentile(finite, [2.5, 97.5]).tolist() if finite.size else (None, None))
    return {"mean": point, "ci95": [low, high], "n": n}


def summarise_group(rows: list[dict], samples: int, seed: int) -> dict:
    """Per-aspect means, `overall` (mean of the five aspect means) and, when safety was scored,
    `overall_with_safety` (mean of six), each with a percentile bootstrap 95% interval.

    Items are resampled as units, so an item's aspect scores stay together and the intervals of
    the overall means account for the aspects being correlated.
    """
    import numpy as np

    names = (*ASPECTS, SAFETY)
    matrix = np.array([[row["scores"].get(name, np.nan) for name in names] for row in rows], dtype=float).reshape(len(rows), len(names))
    counts = np.isfinite(matrix).sum(axis=0)
    present = [j for j in range(len(names)) if counts[j] > 0]
    if not present:
        return {"n": len(rows)}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(rows), size=(samples, len(rows)))
    with warnings.catch_warnings():  # a resample can miss every item of a rare aspect: that draw is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        points = np.nanmean(matrix[:, present], axis=0)
        boots = np.stack([np.nanmean(matrix[draws, j], axis=1) for j in present], axis=1)  # (samples, present)
    summary: dict = {"n": len(rows), "aspects": {}}
    for column, j in enumerate(present):
        summary["aspects"][names[j]] = _interval(float(points[column]), boots[:, column], int(counts[j]))
    for label, wanted in (("overall", ASPECTS), ("overall_with_safety", names)):
        columns = [present.index(names.index(name)) for name in wanted if names.index(name) in present]
        if len(columns) == len(wanted):
            summary[label] = _interval(float(points[columns].mean()), boots[:, columns].mean(axis=1), len(rows))
    return summary


def summarise(run: AspectsRun, items: list[ScoredItem], settings: AspectsSettings) -> dict:
    """All items together and each category alone, plus what could not be scored."""
    categories = sorted({row["category"] for row in run.rows})
    by_category = {"all": summarise_group(run.rows, settings.bootstrap_samples, settings.seed)}
    for category in categories:
        chosen = [row for row in run.rows if row["category"] == category]
        by_category[category] = summarise_group(chosen, settings.bootstrap_samples, settings.seed)
    return {"annotator": settings.annotator, "judge": settings.judge, "prompt_version": PROMPT_VERSION,
            "n_items": len(items), "n_scored": len(run.rows), "n_failed": len(run.failures), "n_resumed": run.resumed,
            "failed_ids": [failure["id"] for failure in run.failures], "by_category": by_category}
