"""Pairwise judge, AlpacaEval-style: the `rtune judge pairwise` stage, whole, callable from Python.

For every instruction present in both the model's file and the reference file the judge says
which output is better; what it sees and how its answer is read is the chosen annotator's
(`rtune.judges.pairwise_protocols`: AlpacaEval 2's own, or rtune's). Each
finished item is appended to a resume log at once; unreadable answers are retried, counted, and
never cached or logged as finished. The run ends with AlpacaEval's files: annotations.json
(preference null for items with no readable answer), leaderboard.csv, and run.json (settings,
counts, cost, metrics), so the CLI and the pipeline write the same thing.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rtune.generation import GenerationResult
from rtune.generation.openai_compat import RetrySettings
from rtune.io import ResumableLog, atomic_write_json, atomic_write_text, check_output, stable_hash
from rtune.judges.alpaca_eval_annotator import ANNOTATOR, INSTALL
from rtune.judges.caller import CACHE_FILE, Answer, JudgeCaller, open_judge, refuse_if_nothing_read, resumable
from rtune.judges.pairs import Pair, align
from rtune.judges.pairwise_protocols import Annotator, Mode, PairwiseProtocol, make_protocol, resolve_annotator
from rtune.judges.pricing import UsageReport
from rtune.progress import SILENT, Progress
from rtune.redact import redact
from rtune.winrate.annotations import Annotation, write_annotations
from rtune.winrate.schema import WinRateReport

LOG_FILE = "annotations.jsonl"  # finished items, appended as they complete (the resume log)
ANNOTATIONS_FILE, LEADERBOARD_FILE, RUN_FILE = "annotations.json", "leaderboard.csv", "run.json"
LEADERBOARD_COLUMNS = (
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
    "avg_length",
    "length_controlled_winrate",
    "lc_standard_error",
)
RECORDED = {"judge", "mode", "seed", "max_attempts", "top_logprobs", "parsed_max_new_tokens"}  # settings in run.json


class PairwiseSettings(RetrySettings):
    """What `rtune judge pairwise` and the pipeline's pairwise stage are asked to do."""

    model_config = ConfigDict(extra="forbid")

    outputs: Path = Field(description="The model's outputs: JSON/JSONL list of {instruction, output, generator}.")
    reference: Path = Field(description="Reference outputs for the same instructions (output_1 in the annotations).")
    judge: str = Field(description="Judge spec: openai:MODEL or openai:MODEL@URL, vllm:MODEL, hf:MODEL.")
    out: Path = Field(
        description="Run directory: annotations.json, leaderboard.csv, run.json, judge cache (rerun to resume)."
    )
    annotator: Annotator | None = Field(
        None,
        description=(
            f"alpaca_eval_2: AlpacaEval 2's {ANNOTATOR} (the paper's), read from the installed alpaca-eval; rtune: "
            f"our own prompt. Default: alpaca_eval_2 when alpaca-eval is installed ({INSTALL}) and the mode is "
            "weighted, else rtune."
        ),
    )
    mode: Mode = Field(
        "weighted",
        description="rtune annotator: weighted: one token, preference from "
        "log-probabilities; parsed: verdict read from text.",
    )
    seed: int = Field(0, description="Draws which output each comparison shows first.")
    limit: int | None = Field(None, ge=1, description="Only the first N shared instructions.")
    max_attempts: int = Field(3, ge=1, description="Tries per item when the answer cannot be read.")
    top_logprobs: int = Field(
        20,
        ge=2,
        le=20,
        description="Alternatives read per token (rtune weighted mode; 20 is the OpenAI API's maximum).",
    )
    parsed_max_new_tokens: int = Field(16, ge=1, description="Answer length cap in parsed mode (rtune).")
    max_concurrency: int = Field(8, ge=1, description="Judge requests in flight (openai).")
    batch_size: int | None = Field(None, ge=1, description="Batch size for an in-process judge (hf).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (default OPENAI_API_KEY)."
    )
    length_controlled: bool = Field(True, description="Also the length-controlled win rate (--no-lc skips it).")

    @property
    def label(self) -> str:
        """The `annotator` of each annotation row: which annotator, with which judge."""
        name = ANNOTATOR if self.annotator == "alpaca_eval_2" else f"rtune_pairwise_{self.mode}"
        return f"{name}:{redact(self.judge)}"

    @model_validator(mode="after")
    def _resolve_annotator(self) -> PairwiseSettings:
        self.annotator = resolve_annotator(self.annotator, self.mode)
        return self

    def protocol(self) -> PairwiseProtocol:
        return make_protocol(self.annotator, self.mode, self.seed, self.top_logprobs, self.parsed_max_new_tokens)


class PairwiseFailure(BaseModel):
    """An item with no readable answer: stored with preference null, asked again by the next run."""

    instruction: str
    attempts: int
    last_answer: str  # its first 500 characters


@dataclass
class PairwiseRun:
    annotations: list[dict]  # AlpacaEval rows, in the order of the pairs
    version: str  # the annotator's prompt version
    failures: list[PairwiseFailure] = field(default_factory=list)
    resumed: int = 0  # items found finished in the log


class PairwiseReport(BaseModel):
    """What `run` found and where it wrote it; run.json records the same."""

    metrics: WinRateReport
    n_compared: int  # instructions both files share (after --limit)
    only_in_outputs: int
    only_in_reference: int
    n_annotated: int
    n_failed: int
    n_resumed: int
    judge_fingerprint: str
    usage: UsageReport
    failures: list[PairwiseFailure]
    annotations_file: Path
    leaderboard_file: Path
    run_file: Path
    log_file: Path
    cache_file: Path


def _item_key(pair: Pair, settings: PairwiseSettings, protocol: PairwiseProtocol, fingerprint: str) -> str:
    return stable_hash(
        {
            "instruction": pair.instruction,
            "output_1": pair.reference,
            "output_2": pair.output,
            "judge": fingerprint,
            "seed": settings.seed,
            **protocol.identity,
        }
    )


def _raw_completion(result: GenerationResult | None) -> dict:
    if result is None:
        return {"text": None}  # nothing was asked: the preference was known without the judge
    raw: dict = {"text": result.text}
    if result.logprobs:
        raw["top_logprobs"] = result.logprobs[0].top
    return raw


def _row(pair: Pair, settings: PairwiseSettings, **fields) -> dict:
    """An AlpacaEval annotation row for `pair`, with `fields` after the outputs and generators."""
    row = {
        "instruction": pair.instruction,
        "output_1": pair.reference,
        "generator_1": pair.reference_generator,
        "output_2": pair.output,
        "generator_2": pair.generator,
        "annotator": settings.label,
        **fields,
    }
    if pair.dataset is not None:
        row["dataset"] = pair.dataset
    return row


def _annotation(
    pair: Pair, answer: Answer[float], settings: PairwiseSettings, protocol: PairwiseProtocol, key: str
) -> dict:
    return _row(
        pair,
        settings,
        preference=answer.value,
        raw_completion=_raw_completion(answer.result),
        model_shown_first=protocol.shown_first(pair),
        attempts=answer.attempts,
        prompt_version=protocol.version,
        key=key,
    )


def judge_pairs(
    pairs: list[Pair], settings: PairwiseSettings, caller: JudgeCaller, progress: Progress = SILENT
) -> PairwiseRun:
    """Annotate every pair not already in the resume log (in `settings.out`), appending each as it finishes."""
    protocol = settings.protocol()
    fingerprint = caller.generator.fingerprint
    keys = [_item_key(pair, settings, protocol, fingerprint) for pair in pairs]
    log = ResumableLog(settings.out / LOG_FILE)
    done = log.done()
    todo = [index for index, key in enumerate(keys) if key not in done]
    run = PairwiseRun(annotations=[], version=protocol.version, resumed=len(pairs) - len(todo))
    progress.start("judge", len(pairs))
    progress.advance(run.resumed)
    fixed = {j: protocol.fixed(pairs[index]) for j, index in enumerate(todo)}
    asked = [j for j, value in fixed.items() if value is None]
    answers = caller.ask(
        len(asked),
        lambda k, attempt: protocol.request(pairs[todo[asked[k]]], attempt),
        lambda k, result: protocol.read(pairs[todo[asked[k]]], result),
    )
    settled = itertools.chain(
        (Answer(j, value, None, 0) for j, value in fixed.items() if value is not None),
        (replace(answer, index=asked[answer.index]) for answer in answers),
    )
    with resumable(log.path):
        for answer in settled:
            index = todo[answer.index]
            if answer.value is None:
                last = answer.result.text if answer.result is not None else ""
                run.failures.append(
                    PairwiseFailure(
                        instruction=pairs[index].instruction, attempts=answer.attempts, last_answer=last[:500]
                    )
                )
            else:
                row = _annotation(pairs[index], answer, settings, protocol, keys[index])
                log.append(row)
                done[keys[index]] = row
            progress.advance()
    run.annotations = [done[key] for key in keys if key in done]
    return run


def annotation_records(run: PairwiseRun, pairs: list[Pair], settings: PairwiseSettings) -> list[Annotation]:
    """AlpacaEval annotations in pair order; items without a readable answer carry preference null."""
    failed = {failure.instruction: failure for failure in run.failures}
    finished = {row["instruction"]: row for row in run.annotations}
    records = []
    for pair in pairs:
        if pair.instruction in finished:
            row = {name: value for name, value in finished[pair.instruction].items() if name != "key"}
        elif pair.instruction in failed:
            failure = failed[pair.instruction]
            row = _row(
                pair,
                settings,
                preference=None,
                raw_completion={"text": failure.last_answer},
                attempts=failure.attempts,
                prompt_version=run.version,
            )
        else:
            continue
        records.append(Annotation.model_validate(row))
    return records


def write_leaderboard(path: Path, report: WinRateReport) -> None:
    """One row in AlpacaEval's leaderboard.csv shape: the generator as the unnamed index column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *LEADERBOARD_COLUMNS])
    values = report.model_dump()
    writer.writerow(
        [report.generator or "model", *("" if values[name] is None else values[name] for name in LEADERBOARD_COLUMNS)]
    )
    atomic_write_text(path, buffer.getvalue())


def run(settings: PairwiseSettings, progress: Progress = SILENT) -> PairwiseReport:
    """Judge every shared instruction (resuming from the log and the cache), then write the AlpacaEval files."""
    from rtune.winrate.metrics import summarize  # numpy and scipy: loaded only when a run needs them

    s, out = settings, settings.out
    check_output(out, inputs=[s.outputs, s.reference], directory=True)
    alignment = align(s.outputs, s.reference, s.limit)
    s.protocol()  # a missing alpaca-eval fails here, before a judge is loaded
    generator, cache = open_judge(
        s.judge,
        out,
        concurrency=s.max_concurrency,
        batch_size=s.batch_size,
        api_key_env=s.api_key_env,
        timeout=s.timeout,
        max_retries=s.max_retries,
    )
    caller = JudgeCaller(generator, cache, s.max_attempts)
    judged = judge_pairs(alignment.pairs, s, caller, progress)
    refuse_if_nothing_read(judged.annotations, judged.failures, s.max_attempts)
    records = annotation_records(judged, alignment.pairs, s)
    write_annotations(out / ANNOTATIONS_FILE, records)
    metrics = summarize(records, str(out / ANNOTATIONS_FILE), length_controlled=s.length_controlled)
    write_leaderboard(out / LEADERBOARD_FILE, metrics)
    report = PairwiseReport(
        metrics=metrics,
        n_compared=len(alignment.pairs),
        only_in_outputs=alignment.only_in_outputs,
        only_in_reference=alignment.only_in_reference,
        n_annotated=len(judged.annotations),
        n_failed=len(judged.failures),
        n_resumed=judged.resumed,
        judge_fingerprint=generator.fingerprint,
        usage=caller.usage.report(s.judge),
        failures=judged.failures,
        annotations_file=out / ANNOTATIONS_FILE,
        leaderboard_file=out / LEADERBOARD_FILE,
        run_file=out / RUN_FILE,
        log_file=out / LOG_FILE,
        cache_file=out / CACHE_FILE,
    )
    atomic_write_json(
        report.run_file,
        {
            **s.model_dump(mode="json", include=RECORDED),
            "judge": redact(s.judge),
            "annotator": s.label,
            "prompt_version": judged.version,
            "judge_fingerprint": report.judge_fingerprint,
            "outputs": str(s.outputs),
            "reference": str(s.reference),
            **report.model_dump(
                include={"n_compared", "only_in_outputs", "only_in_reference", "n_annotated", "n_failed", "n_resumed"}
            ),
            "usage": report.usage.model_dump(),
            "metrics": metrics.model_dump(mode="json"),
            "failures": [failure.model_dump() for failure in report.failures],
        },
    )
    return report
