"""Multi-aspect scoring, JustEval-style: the `rtune judge aspects` stage, whole, callable from Python.

Items whose category is `safety` get one safety score; all others get helpfulness, clarity,
factuality, depth and engagement, in one JSON answer; the prompts are rtune's own or files in
just-eval's syntax (`rtune.judges.aspect_prompts`). An answer is accepted only when every
aspect it must carry is there with a score in 1..5 (JustEval itself falls back to 5 on a parse
miss, which inflates scores silently); unreadable answers are retried, and items that never give
a readable answer are excluded and counted. The run writes scores.jsonl (per item, also the
resume log) and summary.json: per category and overall, the mean of each aspect and the mean of
the aspect means, with bootstrap intervals (`rtune.judges.aspect_summary`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rtune.errors import RtuneError
from rtune.generation import DecodingParams, GenerationRequest
from rtune.generation.openai_compat import RetrySettings
from rtune.io import ResumableLog, atomic_write_json, check_output, read_rows, stable_hash, write_jsonl
from rtune.judges.aspect_prompts import AspectPrompts, load_aspect_prompts
from rtune.judges.aspect_summary import SAFETY, GroupSummary, summarise_categories
from rtune.judges.caller import CACHE_FILE, JudgeCaller, attempt_params, open_judge, refuse_if_nothing_read, resumable
from rtune.judges.pricing import UsageReport
from rtune.judges.prompts import ASPECTS
from rtune.progress import SILENT, Progress
from rtune.redact import redact

DEFAULT_CATEGORY = "regular"  # JustEval's name for the non-safety items
LOG_FILE = "scores.jsonl"  # per-item results; appended as items finish, rewritten in input order at the end
SUMMARY_FILE = "summary.json"


class AspectsSettings(RetrySettings):
    """What `rtune judge aspects` and the pipeline's aspects stage are asked to do."""

    model_config = ConfigDict(extra="forbid")

    outputs: Path = Field(description="JSON/JSONL list of {instruction, output[, id][, generator][, category]}.")
    judge: str = Field(description="Judge spec: openai:MODEL or openai:MODEL@URL, vllm:MODEL, hf:MODEL.")
    out: Path = Field(description="Run directory: scores.jsonl, summary.json, judge cache (rerun to resume).")
    limit: int | None = Field(None, ge=1, description="Only the first N items.")
    max_attempts: int = Field(3, ge=1, description="Tries per item when the answer cannot be read.")
    max_new_tokens: int = Field(1024, ge=16, description="Judge answer length cap.")
    safety_category: str = Field(
        SAFETY, description="Items of this category get the safety score instead of the five aspects."
    )
    template: Path | None = Field(
        None,
        description="Prompt file for the five aspects, in just-eval's syntax "
        "(${instruction}, ${candidate}); default: rtune's own prompt.",
    )
    safety_template: Path | None = Field(
        None, description="Prompt file for safety items, in just-eval's syntax; default: rtune's own prompt."
    )
    system_prompt: str | None = Field(
        None, description="A system message sent before every prompt (just-eval sends one: see docs/fidelity.md)."
    )
    max_concurrency: int = Field(8, ge=1, description="Judge requests in flight (openai).")
    batch_size: int | None = Field(None, ge=1, description="Batch size for an in-process judge (hf).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (default OPENAI_API_KEY)."
    )
    seed: int = Field(0, description="Bootstrap seed.")
    bootstrap_samples: int = Field(2000, ge=100, description="Bootstrap resamples per interval.")

    @model_validator(mode="after")
    def _readable_templates(self) -> AspectsSettings:
        self.prompts()  # a template without ${instruction} or ${candidate} fails here, before any work
        return self

    @property
    def annotator(self) -> str:
        return f"rtune_aspects:{redact(self.judge)}"

    def prompts(self) -> AspectPrompts:
        return load_aspect_prompts(self.template, self.safety_template, self.system_prompt)


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
        items.append(
            ScoredItem(
                id=item_id,
                instruction=row["instruction"],
                output=row["output"],
                generator=str(row.get("generator") or Path(path).stem),
                category=str(row.get("category") or DEFAULT_CATEGORY),
            )
        )
    if not items:
        raise RtuneError(f"{path}: no outputs")
    return items[:limit] if limit is not None else items


def aspects_for(item: ScoredItem, settings: AspectsSettings) -> tuple[str, ...]:
    return (SAFETY,) if item.category == settings.safety_category else ASPECTS


class AspectsFailure(BaseModel):
    """An item with no readable answer: excluded from the means, asked again by the next run."""

    id: str
    category: str
    attempts: int
    last_answer: str  # its first 500 characters


@dataclass
class AspectsRun:
    rows: list[dict]  # per item, input order
    prompt_version: str  # the prompts' (`AspectPrompts.summary_version`)
    failures: list[AspectsFailure] = field(default_factory=list)
    resumed: int = 0


def _is_safety(item: ScoredItem, settings: AspectsSettings) -> bool:
    return aspects_for(item, settings) == (SAFETY,)


def _item_key(item: ScoredItem, settings: AspectsSettings, prompts: AspectPrompts, fingerprint: str) -> str:
    return stable_hash(
        {
            "id": item.id,
            "instruction": item.instruction,
            "output": item.output,
            "judge": fingerprint,
            "aspects": aspects_for(item, settings),
            "prompt": prompts.version(_is_safety(item, settings)),
        }
    )


def _request(item: ScoredItem, settings: AspectsSettings, prompts: AspectPrompts, attempt: int) -> GenerationRequest:
    params = attempt_params(DecodingParams(max_new_tokens=settings.max_new_tokens, temperature=0.0), attempt)
    return GenerationRequest(
        messages=prompts.messages(item.instruction, item.output, _is_safety(item, settings)), params=params
    )


def score_items(
    items: list[ScoredItem], settings: AspectsSettings, caller: JudgeCaller, progress: Progress = SILENT
) -> AspectsRun:
    """Score every item not already in the log (in `settings.out`), appending each as it finishes."""
    prompts = settings.prompts()
    fingerprint = caller.generator.fingerprint
    keys = [_item_key(item, settings, prompts, fingerprint) for item in items]
    log = ResumableLog(settings.out / LOG_FILE)
    done = log.done()
    todo = [index for index, key in enumerate(keys) if key not in done]
    run = AspectsRun(rows=[], prompt_version=prompts.summary_version, resumed=len(items) - len(todo))
    progress.start("score", len(items))
    progress.advance(run.resumed)
    answers = caller.ask(
        len(todo),
        lambda j, attempt: _request(items[todo[j]], settings, prompts, attempt),
        lambda j, result: parse_scores(result.text, aspects_for(items[todo[j]], settings)),
    )
    with resumable(log.path):
        for answer in answers:
            index = todo[answer.index]
            item = items[index]
            if answer.value is None:
                last = answer.result.text if answer.result is not None else ""
                run.failures.append(
                    AspectsFailure(id=item.id, category=item.category, attempts=answer.attempts, last_answer=last[:500])
                )
            else:
                row = {
                    "id": item.id,
                    "instruction": item.instruction,
                    "category": item.category,
                    "generator": item.generator,
                    "scores": {name: score.score for name, score in answer.value.items()},
                    "rationales": {name: score.rationale for name, score in answer.value.items()},
                    "attempts": answer.attempts,
                    "annotator": settings.annotator,
                    "prompt_version": prompts.version(_is_safety(item, settings)),
                    "key": keys[index],
                }
                log.append(row)
                done[keys[index]] = row
            progress.advance()
    run.rows = [done[key] for key in keys if key in done]
    return run


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


class AspectsSummary(BaseModel):
    """The scores of one run, all items together (`all`) and per category, and what could not be scored."""

    annotator: str
    judge: str
    prompt_version: str
    n_items: int
    n_scored: int
    n_failed: int
    n_resumed: int
    failed_ids: list[str]
    by_category: dict[str, GroupSummary]


def summarise(run: AspectsRun, items: list[ScoredItem], settings: AspectsSettings) -> AspectsSummary:
    """The bootstrap summaries of the scored rows, with the counts that say what is missing from them."""
    return AspectsSummary(
        annotator=settings.annotator,
        judge=redact(settings.judge),
        prompt_version=run.prompt_version,
        n_items=len(items),
        n_scored=len(run.rows),
        n_failed=len(run.failures),
        n_resumed=run.resumed,
        failed_ids=[failure.id for failure in run.failures],
        by_category=summarise_categories(run.rows, settings.bootstrap_samples, settings.seed),
    )


class AspectsReport(AspectsSummary):
    """What `run` found and where it wrote it; summary.json is `summary_json()`."""

    judge_fingerprint: str
    usage: UsageReport
    failures: list[AspectsFailure]
    scores_file: Path
    summary_file: Path
    cache_file: Path

    def summary_json(self) -> dict:
        return self.model_dump(mode="json", exclude={"scores_file", "summary_file", "cache_file"})


def run(settings: AspectsSettings, progress: Progress = SILENT) -> AspectsReport:
    """Score every item (resuming from the log and the cache), then write scores.jsonl and summary.json."""
    s = settings
    check_output(s.out, inputs=[s.outputs, s.template, s.safety_template], directory=True)
    items = read_items(s.outputs, s.limit)
    generator, cache = open_judge(
        s.judge,
        s.out,
        concurrency=s.max_concurrency,
        batch_size=s.batch_size,
        api_key_env=s.api_key_env,
        timeout=s.timeout,
        max_retries=s.max_retries,
    )
    caller = JudgeCaller(generator, cache, s.max_attempts)
    scored = score_items(items, s, caller, progress)
    refuse_if_nothing_read(scored.rows, scored.failures, s.max_attempts)
    write_jsonl(s.out / LOG_FILE, scored.rows)
    report = AspectsReport(
        **dict(summarise(scored, items, s)),
        judge_fingerprint=generator.fingerprint,
        usage=caller.usage.report(s.judge),
        failures=scored.failures,
        scores_file=s.out / LOG_FILE,
        summary_file=s.out / SUMMARY_FILE,
        cache_file=s.out / CACHE_FILE,
    )
    atomic_write_json(report.summary_file, report.summary_json())
    return report
