"""What models answer: instruction sets (named, packaged or from a file), and the output rows they give.

Outputs follow AlpacaEval's format (`instruction`, `output`, `generator`, `dataset`), with JustEval's
`id` and `category` carried through, so the judges and the official tools read them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtune.data import registry
from rtune.data.hub import load_rows
from rtune.errors import RtuneError
from rtune.io import placed_rows

CARRIED_FIELDS = ("id", "category")


@dataclass(frozen=True)
class Instruction:
    text: str
    dataset: str
    extra: dict[str, Any] = field(default_factory=dict)  # id, category when the input has them


def _rows(name_or_path: str, data_dir: str | Path | None) -> tuple[list[tuple[str, dict]], str, str | None]:
    """(rows with where each one is, where they come from, dataset name): a named set from the data dir or the
    hub, else a local file."""
    if name_or_path in registry.known("instructions") or name_or_path in registry.known("packaged"):
        root = registry.resolve_data_dir(data_dir)
        if root is None and registry.get(name_or_path).packaged is None:
            source = registry.hub_source(name_or_path)
            rows = load_rows(source.id, source.config, source.split)
            return [(f"{source.id}: row {n}", row) for n, row in enumerate(rows, start=1)], source.id, name_or_path
        path = registry.local_file(name_or_path, root)
        return placed_rows(path), str(path), name_or_path
    return placed_rows(Path(name_or_path)), name_or_path, None


def load_instructions(
    name_or_path: str, data_dir: str | Path | None = None, limit: int | None = None
) -> list[Instruction]:
    """Rows with `instruction` (AlpacaEval, JustEval, any JSON/JSONL/CSV) or `prompt` (our record JSONL)."""
    rows, where, name = _rows(name_or_path, data_dir)
    instructions = []
    for place, row in rows[:limit] if limit else rows:
        text = row.get("instruction", row.get("prompt"))
        if not isinstance(text, str) or not text.strip():
            raise RtuneError(f"{place}: expected a non-empty 'instruction' (or 'prompt') string")
        extra = {key: row[key] for key in CARRIED_FIELDS if key in row}
        instructions.append(Instruction(text, str(row.get("dataset") or name or Path(where).stem), extra))
    if not instructions:
        raise RtuneError(f"{where}: no instructions found")
    return instructions


def output_row(instruction: Instruction, output: str, generator: str, **extra: Any) -> dict:
    """One row of an outputs file; `extra` records how the answer was produced (finish_reason, output_tokens)."""
    return {
        "instruction": instruction.text,
        "output": output,
        "generator": generator,
        "dataset": instruction.dataset,
        **instruction.extra,
        **extra,
    }
