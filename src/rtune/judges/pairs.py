"""What a pairwise judge compares, in which order it sees the two outputs, and how its answer is read.

Preferences follow AlpacaEval: `output_1` is the reference, `output_2` the model; 1 = reference
preferred, 2 = model preferred, anything between for a weighted judge. The display order of each
pair is a coin fixed by (seed, instruction), undone when the preference is computed.

Two ways to read the judge:
- weighted (AlpacaEval 2's default): one output token, and the probability mass the judge puts
  on the two identifiers among its top log-probabilities, renormalised — a continuous preference;
- parsed: for judges without log-probabilities, a verdict read from a short text answer.
A reading of None means the answer could not be read (the caller retries it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from rtune.errors import RtuneError
from rtune.generation import GenerationResult
from rtune.io import read_rows, stable_hash
from rtune.judges.prompts import PAIRWISE_IDS
from rtune.winrate.annotations import preference_from_score


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
            raise RtuneError(
                f"{path}: row {number}: instruction appears twice with different outputs "
                f"({row['instruction'][:60]!r}); keep one output per instruction"
            )
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
        raise RtuneError(
            f"{outputs_path} and {reference_path} share no instruction: are they outputs for the same set?"
        )
    pairs = [
        Pair(
            instruction=instruction,
            reference=reference[instruction]["output"],
            output=outputs[instruction]["output"],
            reference_generator=reference[instruction]["generator"],
            generator=outputs[instruction]["generator"],
            dataset=outputs[instruction].get("dataset") or reference[instruction].get("dataset"),
        )
        for instruction in shared
    ]
    return Alignment(
        pairs=pairs[:limit] if limit is not None else pairs,
        only_in_outputs=len(outputs) - len(shared),
        only_in_reference=len(reference) - len(shared),
    )


def model_shown_first(seed: int, instruction: str) -> bool:
    """The display order of one pair: a fair coin fixed by (seed, instruction), so reruns agree."""
    return int(stable_hash({"seed": seed, "instruction": instruction})[:8], 16) % 2 == 1


def preference(p_first_wins: float, swapped: bool) -> float:
    """AlpacaEval preference in [1, 2] from P(the output shown first wins), undoing the display order."""
    return preference_from_score(p_first_wins if swapped else 1.0 - p_first_wins)


def _identifier(token: str) -> str:
    """A token as the identifier it names: tokenizers spell "A" as "A", " A", "▁A" or "ĠA"."""
    return token.replace("\u2581", " ").replace("\u0120", " ").strip()


def weighted_reading(result: GenerationResult) -> float | None:
    """P(first shown wins): the first token's probability mass on A, over the mass on A and B."""
    if not result.logprobs:
        if result.text.strip():
            raise RtuneError(
                "the judge returned no log-probabilities, which weighted mode needs; use --mode parsed for this judge"
            )
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


_VERDICT = re.compile(
    r"^(?:(?:response|output|answer|verdict|better(?: response)?)\s*[:\-]?\s*)?\(?([AB])\)?[.!]?$", re.IGNORECASE
)


def parsed_reading(result: GenerationResult) -> float | None:
    """1.0 when the answer names A, 0.0 for B: the whole answer, or its last line, must be the verdict."""
    lines = [line.strip().strip("*_`\"'").strip() for line in result.text.strip().splitlines() if line.strip()]
    for line in (lines[:1] + lines[-1:]) if lines else []:
        match = _VERDICT.match(line)
        if match:
            return 1.0 if match.group(1).upper() == PAIRWISE_IDS[0] else 0.0
    return None
