"""Judge-free response rate: does a model answer the instruction, and stop?

Every output is put in exactly one class, checked in this order:

- `empty`: nothing but whitespace.
- `echo`: it opens by restating the instruction. Measured on word tokens (lower-cased `\\w+`): the
  longest common subsequence of the instruction and the output's opening (its first
  `len(instruction) + ECHO_SLACK` words) divided by the instruction's length, counted only when
  the opening's first two words include the instruction's first word. An opening that reproduces
  at least `ECHO_THRESHOLD` of the instruction, in order, restates it ("Why was Venice built on
  land?" for "Why was Venice built on water?"); answers that reuse its words stay below ("The
  volume of a cube with sides of 5 cm is 125 cm³." repeats 9 of 11 words, but not "what is"). An output whose
  first line begins with the instruction's input, word for word, is an echo too (`copies_input`).
  The thresholds were chosen on the hand-labelled outputs in `tests/data/response_labels.jsonl`
  (45 rows of base, IT and SmolLM2; 16 RT rows labelled afterwards agree 15/16, all 16 on answer or not).
- `template_leak`: it writes a turn marker of the paper's template (`<|user|>`, `<|assistant|>`,
  `<|system|>`), i.e. it goes on to play the next turn.
- `degenerate`: it loops: at least `LOOP_SHARE` of its word n-grams (n = `LOOP_N`) repeat an
  earlier n-gram, in a text of at least `LOOP_MIN_WORDS` words; or it repeats a unit of at most
  10 non-space characters `CHAR_RUN` times in a row ("1111…", "!?!?…"), which word n-grams miss.
- `runaway`: it did not end with EOS (or a stop string) within the token budget.
- `answer`: everything else: non-empty, ended within the budget, no marker, not an echo, no loop.

Rates come with percentile-bootstrap 95% CIs over items; answer length is in tokens when the
outputs file records them (`output_tokens`), else in words.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtune.errors import RtuneError
from rtune.stats import Interval, bootstrap_mean

Label = Literal["answer", "echo", "template_leak", "degenerate", "runaway", "empty"]
LABELS: tuple[str, ...] = ("answer", "echo", "template_leak", "degenerate", "runaway", "empty")
MARKERS = ("<|user|>", "<|assistant|>", "<|system|>")
ECHO_THRESHOLD = 0.7
ECHO_SLACK = 5
ECHO_MIN_WORDS = 3
LOOP_N = 3
LOOP_SHARE = 0.4
LOOP_MIN_WORDS = 24
CHAR_RUN = 20
_CHAR_LOOP = re.compile(rf"(\S{{1,10}}?)\1{{{CHAR_RUN - 1},}}")  # no whitespace: indentation is no loop
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def echo_score(instruction: str, output: str) -> float:
    """Share of the instruction's words that the output's opening repeats in order (0 for short instructions)."""
    asked = words(instruction)
    if len(asked) < ECHO_MIN_WORDS:
        return 0.0
    opening = words(output)[: len(asked) + ECHO_SLACK]
    if asked[0] not in opening[:2]:  # a restatement starts where the instruction does; an answer drops "what is"
        return 0.0
    return _lcs(asked, opening) / len(asked)


def copies_input(instruction: str, output: str) -> bool:
    """Does the output's first line begin with the instruction's input (a paragraph after the first), word for word?

    Base models and weak tuned models often answer "Rewrite: It changed my life." with "It changed my life."
    or repeat the passage they were given. An input of fewer than ECHO_MIN_WORDS words must make up the whole
    line ("laureating" → "laureating"), so that "Paris" → "Paris is in France." stays an answer.
    """
    first_line = words(output.strip().split("\n", 1)[0])
    for paragraph in instruction.strip().split("\n\n")[1:]:
        given = words(paragraph)
        if given and (first_line == given if len(given) < ECHO_MIN_WORDS else first_line[: len(given)] == given):
            return True
    return False


def loop_share(output: str) -> float:
    """Share of the word n-grams that repeat an earlier one (0 for short texts)."""
    tokens = words(output)
    if len(tokens) < LOOP_MIN_WORDS:
        return 0.0
    grams = [tuple(tokens[i : i + LOOP_N]) for i in range(len(tokens) - LOOP_N + 1)]
    return sum(count - 1 for count in Counter(grams).values()) / len(grams)


def char_loop(output: str) -> bool:
    """Does the output repeat a short unit of characters CHAR_RUN times in a row?"""
    return _CHAR_LOOP.search(output) is not None


def classify(instruction: str, output: str, finish_reason: str) -> Label:
    if not output.strip():
        return "empty"
    if echo_score(instruction, output) >= ECHO_THRESHOLD or copies_input(instruction, output):
        return "echo"
    if any(marker in output for marker in MARKERS):
        return "template_leak"
    if loop_share(output) >= LOOP_SHARE or char_loop(output):
        return "degenerate"
    if finish_reason == "length":
        return "runaway"
    return "answer"


class ResponsesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outputs: Path = Field(
        description="outputs file (rtune generate's JSON: instruction, output, finish_reason[, output_tokens])"
    )
    out: Path | None = Field(None, description="write the result (per-item labels included) as JSON here")
    seed: int = Field(0, description="bootstrap seed")
    bootstrap_samples: int = Field(2000, ge=100)


class ItemLabel(BaseModel):
    instruction: str
    label: Label
    echo_score: float
    loop_share: float
    length: int


class ResponsesResult(BaseModel):
    outputs: str
    generator: str | None
    n: int
    rates: dict[str, Interval]  # every label's share, with its CI
    answer_rate: Interval
    mean_answer_length: float | None  # over `answer` items
    length_unit: Literal["tokens", "words"]
    items: list[ItemLabel]


def _rows(path: Path) -> list[dict]:
    """The outputs file's rows, each checked for what the classifier needs."""
    from rtune.io import read_rows

    rows = read_rows(path)
    for number, row in enumerate(rows, start=1):
        for name in ("instruction", "output", "finish_reason"):
            if not isinstance(row.get(name), str):
                hint = (
                    " (outputs written before rtune recorded how each answer ended: generate them again)"
                    if name == "finish_reason"
                    else ""
                )
                raise RtuneError(f"{path}: row {number}: expected a string '{name}'{hint}")
        if row["finish_reason"] not in ("stop", "length"):
            raise RtuneError(
                f"{path}: row {number}: finish_reason must be stop or length, got {row['finish_reason']!r}"
            )
    if not rows:
        raise RtuneError(f"{path}: no outputs")
    return rows


def run(settings: ResponsesSettings) -> ResponsesResult:
    """Label every output, then the rates with their CIs."""
    from rtune.io import atomic_write_json, check_output

    if settings.out is not None:
        check_output(settings.out, inputs=[settings.outputs])
    rows = _rows(settings.outputs)
    by_tokens = all(isinstance(row.get("output_tokens"), int) for row in rows)
    items = [
        ItemLabel(
            instruction=row["instruction"],
            label=classify(row["instruction"], row["output"], row["finish_reason"]),
            echo_score=echo_score(row["instruction"], row["output"]),
            loop_share=loop_share(row["output"]),
            length=row["output_tokens"] if by_tokens else len(words(row["output"])),
        )
        for row in rows
    ]
    rates = {
        label: bootstrap_mean([item.label == label for item in items], settings.bootstrap_samples, settings.seed)
        for label in LABELS
    }
    answered = [item.length for item in items if item.label == "answer"]
    generators = {str(row.get("generator")) for row in rows}
    result = ResponsesResult(
        outputs=str(settings.outputs),
        generator=generators.pop() if len(generators) == 1 else None,
        n=len(items),
        rates=rates,
        answer_rate=rates["answer"],
        mean_answer_length=sum(answered) / len(answered) if answered else None,
        length_unit="tokens" if by_tokens else "words",
        items=items,
    )
    if settings.out is not None:
        atomic_write_json(settings.out, result.model_dump(mode="json"))
    return result


def format_summary(result: ResponsesResult) -> str:
    def share(i: Interval) -> str:
        return f"{i.value:.3f} [{i.ci_low:.3f}, {i.ci_high:.3f}]"

    lines = [
        f"{result.generator or result.outputs}: {result.n} outputs; answer rate {share(result.answer_rate)}"
        + (
            f", mean answer length {result.mean_answer_length:.1f} {result.length_unit}"
            if result.mean_answer_length
            else ""
        )
    ]
    lines += [f"  {label:14s} {share(result.rates[label])}" for label in LABELS if label != "answer"]
    return "\n".join(lines)
