"""Blind pairs: the items a person judges, and their seeded display order.

One pair is one instruction with two outputs, named as in AlpacaEval: `output_1` is the reference
(e.g. the instruction-tuned model) and `output_2` the model under evaluation. `shown_first` says
which of the two appears on the left: a fair coin fixed by (seed, instruction), the same coin the
LLM pairwise judge uses, so reruns and annotators see the same layout.

The blind-pairs file is a JSON list of
`{"id", "instruction", "output_1", "generator_1", "output_2", "generator_2", "shown_first"}`
objects; the study pipeline writes one with `write_pairs`, and `rtune annotate --pairs` opens it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from rtune.annotate.settings import PairsSource
from rtune.errors import RtuneError
from rtune.io import atomic_write_json, check_output, read_json, stable_hash
from rtune.judges.pairs import align, model_shown_first

PAIRS_FILE = "pairs.json"  # the copy an annotate DIR keeps of the pairs it judges


class BlindPair(BaseModel):
    """One item of a blind pairwise study; which generator wrote what is never shown to the person."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    instruction: str
    output_1: str  # the reference
    generator_1: str
    output_2: str  # the model under evaluation
    generator_2: str
    shown_first: Literal[1, 2]  # the output displayed on the left

    def side_output(self, side: Literal["left", "right"]) -> Literal[1, 2]:
        """Which output (1 or 2) is displayed on `side`."""
        return self.shown_first if side == "left" else 3 - self.shown_first  # type: ignore[return-value]


_PAIRS = TypeAdapter(list[BlindPair])


def pair_id(instruction: str) -> str:
    """A short stable id for an instruction: AlpacaEval identifies a comparison by its instruction."""
    return stable_hash({"instruction": instruction})[:16]


def pairs_from_outputs(outputs: Path, reference: Path, seed: int = 0, limit: int | None = None) -> list[BlindPair]:
    """Pairs for the instructions both outputs files share, in the outputs file's order."""
    alignment = align(Path(outputs), Path(reference), limit)
    return [
        BlindPair(
            id=pair_id(pair.instruction),
            instruction=pair.instruction,
            output_1=pair.reference,
            generator_1=pair.reference_generator,
            output_2=pair.output,
            generator_2=pair.generator,
            shown_first=2 if model_shown_first(seed, pair.instruction) else 1,
        )
        for pair in alignment.pairs
    ]


def check_pairs(pairs: Sequence[BlindPair], source: str | Path) -> None:
    if not pairs:
        raise RtuneError(f"{source}: no pairs")
    seen: set[str] = set()
    for number, pair in enumerate(pairs, start=1):
        if pair.id in seen:
            raise RtuneError(f"{source}: pair {number}: id {pair.id!r} appears twice; ids must be unique")
        seen.add(pair.id)


def read_pairs(path: str | Path, limit: int | None = None) -> list[BlindPair]:
    """Read a blind-pairs file; every error names the file and the pair."""
    path = Path(path)
    rows = read_json(path)
    if not isinstance(rows, list):
        raise RtuneError(f"{path}: expected a JSON list of pairs, got {type(rows).__name__}")
    try:
        pairs = _PAIRS.validate_python(rows)
    except ValidationError as exc:
        first = exc.errors()[0]
        number, *field = first["loc"]
        where = f"pair {int(number) + 1}" + (f", field '{'.'.join(map(str, field))}'" if field else "")
        raise RtuneError(f"{path}: {where}: {first['msg']}") from None
    check_pairs(pairs, path)
    return pairs[:limit] if limit is not None else pairs


def write_pairs(path: str | Path, pairs: Sequence[BlindPair]) -> None:
    """Write a blind-pairs file atomically."""
    check_pairs(pairs, path)
    atomic_write_json(path, [pair.model_dump(mode="json") for pair in pairs])


def dir_pairs(directory: str | Path) -> list[BlindPair]:
    """The pairs an annotate folder judges (its own copy, written when it was started)."""
    path = Path(directory) / PAIRS_FILE
    if not path.is_file():
        raise RtuneError(
            f"{directory}: not an annotate folder (no {PAIRS_FILE}); "
            "start one with `rtune annotate --outputs A.json --reference B.json --out DIR`"
        )
    return read_pairs(path)


def adopt_pairs(directory: str | Path, pairs: Sequence[BlindPair]) -> list[BlindPair]:
    """Keep `pairs` as the folder's pairs; a folder may grow (a larger --limit) but never change a pair it has."""
    path = Path(directory) / PAIRS_FILE
    pairs = list(pairs)
    check_pairs(pairs, "pairs")
    if path.is_file():
        kept = read_pairs(path)
        if kept == pairs:
            return kept
        new = {pair.id: pair for pair in pairs}
        changed = [pair.id for pair in kept if new.get(pair.id) != pair]
        if changed:
            raise RtuneError(
                f"{directory} already holds a different set of pairs ({len(changed)} of its "
                f"{len(kept)} pairs are missing or differ, e.g. {changed[0]!r}); use a new --out, "
                f"or `rtune annotate --out {directory}` alone to go on with the pairs it has"
            )
    write_pairs(path, pairs)
    return pairs


def study_pairs(source: PairsSource) -> list[BlindPair]:
    """The pairs to judge, kept in the folder: new ones from the files given, else the folder's own."""
    if source.pairs_file is not None and (source.outputs is not None or source.reference is not None):
        raise RtuneError("give either --pairs or --outputs with --reference, not both")
    if source.pairs_file is not None and source.seed is not None:
        raise RtuneError(
            "a pairs file fixes the display order (shown_first); --seed applies to --outputs/--reference only"
        )
    if (source.outputs is None) != (source.reference is None):
        raise RtuneError("--outputs and --reference go together")
    if source.outputs is None and source.seed is not None:
        raise RtuneError("--seed applies to --outputs/--reference only (a folder keeps the order it was started with)")
    check_output(source.directory, inputs=[source.outputs, source.reference, source.pairs_file], directory=True)
    if source.pairs_file is not None:
        return adopt_pairs(source.directory, read_pairs(source.pairs_file, source.limit))
    if source.outputs is not None:
        pairs = pairs_from_outputs(source.outputs, source.reference, source.seed or 0, source.limit)
        return adopt_pairs(source.directory, pairs)
    return dir_pairs(source.directory)[: source.limit]  # go on with the folder's own pairs
