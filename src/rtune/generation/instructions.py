"""What `rtune generate` answers: instruction sets (named or from a file), their requests, and output rows.

Outputs follow AlpacaEval's format (`instruction`, `output`, `generator`, `dataset`), with JustEval's
`id` and `category` carried through, so the judges and the official tools read them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtune.data.sources import DATA_DIR_ENV, read_rows, resolve_data_dir
from rtune.errors import RtuneError
from rtune.evals import urial
from rtune.generation.base import DecodingParams, GenerationRequest

NAMED_INPUTS = {
    "alpaca_eval": Path("alpaca_eval/alpaca_eval_805.jsonl"),
    "just_eval": Path("just_eval/just_eval_instructions.jsonl"),
}
CARRIED_FIELDS = ("id", "category")


@dataclass(frozen=True)
class Instruction:
    text: str
    dataset: str
    extra: dict[str, Any] = field(default_factory=dict)  # id, category when the input has them


def _input_path(name_or_path: str, data_dir: str | Path | None) -> tuple[Path, str | None]:
    if name_or_path in NAMED_INPUTS:
        root = resolve_data_dir(data_dir)
        if root is None:
            raise RtuneError(f"input '{name_or_path}' is read from local data: pass --data-dir or set {DATA_DIR_ENV} "
                             f"to a folder holding {NAMED_INPUTS[name_or_path]}")
        path = root / NAMED_INPUTS[name_or_path]
        if not path.is_file():
            raise RtuneError(f"input '{name_or_path}': {path} not found")
        return path, name_or_path
    return Path(name_or_path), None


def load_instructions(name_or_path: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[Instruction]:
    """Rows with `instruction` (AlpacaEval, JustEval, any JSON/JSONL/CSV) or `prompt` (our record JSONL)."""
    path, name = _input_path(name_or_path, data_dir)
    rows = read_rows(path)
    instructions = []
    for number, row in enumerate(rows[:limit] if limit else rows, start=1):
        text = row.get("instruction", row.get("prompt"))
        if not isinstance(text, str) or not text.strip():
            raise RtuneError(f"{path}: row {number}: expected a non-empty 'instruction' (or 'prompt') string")
        extra = {key: row[key] for key in CARRIED_FIELDS if key in row}
        instructions.append(Instruction(text, str(row.get("dataset") or name or path.stem), extra))
    if not instructions:
        raise RtuneError(f"{path}: no instructions found")
    return instructions


@dataclass(frozen=True)
class PromptStyle:
    """How an instruction becomes a request: URIAL text, raw text, or a chat turn (the model's template)."""

    urial_template: str | None = None
    chat_template: bool = True

    def request(self, instruction: str, params: DecodingParams) -> GenerationRequest:
        if self.urial_template is not None:
            stop = tuple(dict.fromkeys(params.stop + urial.URIAL_STOP))
            return GenerationRequest(prompt=urial.render(self.urial_template, instruction), params=params.model_copy(update={"stop": stop}))
        if not self.chat_template:
            return GenerationRequest(prompt=instruction, params=params)
        return GenerationRequest(messages=({"role": "user", "content": instruction},), params=params)

    def clean(self, text: str) -> str:
        return urial.clean_output(text) if self.urial_template is not None else text.strip()


def output_row(instruction: Instruction, output: str, generator: str) -> dict:
    return {"instruction": instruction.text, "output": output, "generator": generator,
            "dataset": instruction.dataset, **instruction.extra}
