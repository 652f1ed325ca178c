"""Pairwise judge, AlpacaEval-style: which of two outputs for the same instruction is better?

For every instruction present in both the model's file and the reference file, the judge sees
the two outputs in an order drawn from (seed, instruction) — recorded, and undone when the
preference is stored. Preferences follow AlpacaEval: `output_1` is the reference, `output_2` the
model; 1 = reference preferred, 2 = model preferred, anything between for a weighted judge.

Two ways to read the judge:
- weighted (AlpacaEval 2's default): one output token, and the probability mass the judge puts
  on the two identifiers among its top log-probabilities, renormalised — a continuous preference;
- parsed: for judges without log-probabilities, a verdict read from a short text answer.
Unreadable answers are retried, counted, and never cached or logged as finished.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, Field

from rtune.data.sources import read_rows
from rtune.errors import RtuneError
from rtune.generation import DecodingParams, GenerationRequest, GenerationResult
from rtune.io import append_jsonl, stable_hash
from rtune.judges.caller import Answer, JudgeCaller, attempt_params, finished_items
from rtune.judges.prompts import PAIRWISE_IDS, PROMPT_VERSION, pairwise_messages

Mode = Literal["weighted", "parsed"]
LOG_FILE = "annotations.jsonl"  # finished items, appended as they complete (the resume log)


class PairwiseSettings(BaseModel):
    judge: str  # generator spec, e.g. openai:gpt-4o-2024-08-06 or hf:smollm2-135m-instruct
    mode: Mode = "weighted"
    seed: int = 0  # draws the display order of each pair
    max_attempts: int = Field(3, ge=1)  # per item, first try included
    top_logprobs: int = Field(20, ge=2, le=20)  # weighted mode; 20 is the OpenAI API's maximum
    parsed_max_new_tokens: int = Field(16, ge=1)

    @property
    def annotator(self) -> str:
        return f"rtune_pairwise_{self.mode}:{self.judge}"


# ------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    instruction: str
    reference: str  # output_1
    output: str  # output_2, the model under evaluation
    reference_generator: str
    generator: str
    dataset: str | None = None


@dataclass
class Alignment:
    pairs: list[Pair]
    only_in_outputs: int
    only_in_reference: int


def _outputs_by_instruction(path: Path) -> dict[str, dict]:
    """Rows keyed by instruction, in file order; each must carry string `instruction` and `output`."""
    rows: dict[str, dict] = {}
    for number, row in enumerate(read_rows(Path(path)), start=1):
        for name in ("instruction", "output"):
            if not isinstance(row.get(name), str):
                found = type(row.get(name)).__name__ if name in row else "nothing"
                raise RtuneError(f"{path}: row {number}: expected a string '{name}', found {found}")
        previous = rows.get(row["instruction"])
        if previous is not None and previous["output"] != row["output"]:
            raise RtuneError(f"{path}: row {number}: instruction appears twice with different outputs "
                             f"({row['instruction'][:60]!r}); keep one output per instruction")
        rows.setdefault(row["instruction"], {**row, "generator": str(row.get("generator") or Path(path).stem)})
    if not rows:
        raise RtuneError(f"{path}: no outputs")
    return rows


def align(outputs_path: Path, reference_path: Path, limit: int | None = None) -> Alignment:
    """Pairs for the instructions both files share, in the order of the model's outputs file."""
    outputs = _outputs_by_instruction(outputs_path)
    reference = _outputs_by_instruction(reference_path)
    shared = [instruction for instruction in outputs if instruction in reference]
    if not shared:
        raise RtuneError(f"{outputs_path} and {reference_path} share no instruction: are they outputs for the same set?")
    pairs = [Pair(instruction=instruction, reference=reference[instruction]["output"], output=outputs[instruction]["output"],
                  reference_generator=reference[instruction]["generator"], generator=outputs[instruction]["generator"],
                  dataset=outputs[instruction].get("dataset") or reference[instruction].get("dataset"))
             for instruction in shared]
    return Alignment(pairs=pairs[:limit] if limit is not None else pairs,
                     only_in_outputs=len(outputs) - len(shared), only_in_reference=len(reference) - len(shared))


# ------------------------------------------------------------------------------------------
# Order, requests, readings
# ------------------------------------------------------------------------------------------


def model_shown_first(seed: int, instruction: str) -> bool:
    """The display order of one pair: a fair coin fixed by (seed, instruction), so reruns agree."""
    return int(stable_hash({"seed": seed, "instruction": instruction})[:8], 16) % 2 == 1


def preference(p_first_wins: float, swapped: bool) -> float:
    """AlpacaEval preference in [1, 2] from P(the output shown first wins), undoing the display order."""
    p_model_wins = p_first_wins if swapped else 1.0 - p_first_wins
    return 1.0 + p_model_wins


def _identifier(token: str) -> str:
    """A token as the identifier it names: tokenizers spell "A" as "A", " A", "▁A" or "ĠA"."""
    return token.replace("\u2581", " ").replace("\u0120", " ").strip()


def weighted_reading(result: GenerationResult) -> float | None:
    """P(first shown wins): the first token's probability mass on A, over the mass on A and B."""
    if not result.logprobs:
        if result.text.strip():
            raise RtuneError("the judge returned no log-probabilities, which weighted mode needs; "
                             "use --mode parsed for this judge")
        return None
    first = result.logprobs[0]
    candidates = dict(first.top)
    candidates.setdefault(first.token, first.logprob)  # a sampled token can fall outside the top-k
    mass = dict.fromkeys(PAIRWISE_IDS, 0.0)
    for token, logprob in candidates.items():
        name = _identifier(token)
        if name in mass and math.isfinite(logprob):
            mass[name] += math.exp(logprob)
    total = sum(mass.values())
    return mass[PAIRWISE_IDS[0]] / total if total > 0 else None


_VERDICT = re.compile(r"^(?:(?:response|output|answer|verdict|better(?: response)?)\s*[:\-]?\s*)?\(?([AB])\)?[.!]?$", re.IGNORECASE)


def parsed_reading(result: GenerationResult) -> float | None:
    """1.0 when the answer names A, 0.0 for B: the whole answer, or its last line, must be the verdict."""
    lines = [line.strip().strip("*_`\"'").strip() for line in result.text.strip().splitlines() if line.strip()]
    for line in (lines[:1] + lines[-1:]) if lines else []:
        match = _VERDICT.match(line)
        if match:
            return 1.0 if match.group(1).upper() == PAIRWISE_IDS[0] else 0.0
    return None


def _request(pair: Pair, settings: PairwiseSettings, attempt: int) -> GenerationRequest:
    first, second = (pair.output, pair.reference) if model_shown_first(settings.seed, pair.instruction) else (pair.reference, pair.output)
    if settings.mode == "weighted":
        params = DecodingParams(max_new_tokens=1, temperature=0.0, top_logprobs=settings.top_logprobs)
    else:
        params = DecodingParams(max_new_tokens=settings.parsed_max_new_tokens, temperature=0.0)
    return GenerationRequest(messages=pairwise_messages(pair.instruction, first, second), params=attempt_params(params, attempt))


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------


@dataclass
class PairwiseRun:
    annotations: list[dict]  # AlpacaEval rows, in the order of the pairs
    failures: list[dict] = field(default_factory=list)  # items with no readable answer (retried next run)
    resumed: int = 0  # items found finished in the log


def _item_key(pair: Pair, settings: PairwiseSettings, fingerprint: str) -> str:
    return stable_hash({"instruction": pair.instruction, "output_1": pair.reference, "output_2": pair.output,
                        "judge": fingerprint, "mode": settings.mode, "seed": settings.seed, "prompt": PROMPT_VERSION})


def _raw_completion(result: GenerationResult) -> dict:
    raw: dict = {"text": result.text}
    if result.logprobs:
        raw["top_logprobs"] = result.logprobs[0].top
    return raw


def _annotation(pair: Pair, answer: Answer[float], settings: PairwiseSettings, key: str) -> dict:
    swapped = model_shown_first(settings.seed, pair.instruction)
    row = {"instruction": pair.instruction, "output_1": pair.reference, "generator_1": pair.reference_generator,
           "output_2": pair.output, "generator_2": pair.generator, "annotator": settings.annotator,
           "preference": preference(answer.value, swapped), "raw_completion": _raw_completion(answer.result),
           "model_shown_first": swapped, "attempts": answer.attempts, "prompt_version": PROMPT_VERSION, "key": key}
    if pair.dataset is not None:
        row["dataset"] = pair.dataset
    return row


def judge_pairs(pairs: list[Pair], settings: PairwiseSettings, caller: JudgeCaller, log_path: Path,
                on_settled: Callable[[int], None] = lambda count: None) -> PairwiseRun:
    """Annotate every pair not already in the log; each finished item is appended to the log at once."""
    fingerprint = caller.generator.fingerprint
    keys = [_item_key(pair, settings, fingerprint) for pair in pairs]
    done = finished_items(log_path)
    todo = [index for index, key in enumerate(keys) if key not in done]
    run = PairwiseRun(annotations=[], resumed=len(pairs) - len(todo))
    on_settled(run.resumed)
    reading = weighted_reading if settings.mode == "weighted" else parsed_reading
    answers = caller.ask(len(todo), lambda j, attempt: _request(pairs[todo[j]], settings, attempt),
                         lambda j, result: reading(result))
    for answer in answers:
        index = todo[answer.index]
        if answer.value is None:
            last = answer.result.text if answer.result is not None else ""
            run.failures.append({"instruction": pairs[index].instruction, "attempts": answer.attempts, "last_answer": last[:500]})
        else:
            row = _annotation(pairs[index], answer, settings, keys[index])
            append_jsonl(log_path, row)
            done[keys[index]] = row
        on_settled(1)
    run.annotations = [done[key] for key in keys if key in done]
    return run


# ------------------------------------------------------------------------------------------
# Results on disk
# ------------------------------------------------------------------------------------------

LEADERBOARD_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate",
                       "avg_length", "length_controlled_winrate", "lc_standard_error")


def annotation_records(run: PairwiseRun, pairs: list[Pair], settings: PairwiseSettings) -> list:
    """AlpacaEval annotations in pair order; items without a readable answer carry preference null."""
    from rtune.annotations import Annotation

    failed = {failure["instruction"]: failure for failure in run.failures}
    finished = {row["instruction"]: row for row in run.annotations}
    records = []
    for pair in pairs:
        if pair.instruction in finished:
            row = {name: value for name, value in finished[pair.instruction].items() if name != "key"}
        elif pair.instruction in failed:
            failure = failed[pair.instruction]
            row = {"instruction": pair.instruction, "output_1": pair.reference, "generator_1": pair.reference_generator,
                   "output_2": pair.output, "generator_2": pair.generator, "annotator": settings.annotator, "preference": None,
                   "raw_completion": {"text": failure["last_answer"]}, "attempts": failure["attempts"], "prompt_version": PROMPT_VERSION}
            if pair.dataset is not None:
                row["dataset"] = pair.dataset
        else:
            continue
        records.append(Annotation.model_validate(row))
    return records


def write_leaderboard(path: Path, report) -> None:
    """One row in AlpacaEval's leaderboard.csv shape: the generator as the unnamed index column."""
    import csv
    import io

    from rtune.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *LEADERBOARD_COLUMNS])
    values = report.model_dump()
    writer.writerow([report.generator or "model", *("" if values[name] is None else values[name] for name in LEADERBOARD_COLUMNS)])
    atomic_write_text(path, buffer.getvalue())
