"""Training data from any source, turned into canonical records.

Named sources (`lima`, `alpaca`, … in `rtune.data.registry`) read their local copy under a data dir,
else the Hugging Face hub; any local `.jsonl/.json/.csv` file and `hf:<dataset id>` work too. Rows of
every common layout (prompt/completion, Alpaca, Dolly, OpenAI messages, ShareGPT) are recognised.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rtune.data import registry
from rtune.data.hub import load_rows
from rtune.data.records import Record
from rtune.errors import RtuneError
from rtune.io import json_type, placed_rows


@dataclass(frozen=True)
class Pair:
    prompt: str
    completion: str
    native_id: str | None = None


def _lima_single_turn(rows: list[dict]) -> list[dict]:
    """The paper trains on the first 1,000 rows of GAIR/lima, which are its single-turn examples."""
    single = [
        row
        for row in rows
        if not row.get("history") and not (isinstance(row.get("conversations"), list) and len(row["conversations"]) > 2)
    ]
    return single[:1000]


SELECT: dict[str, Callable[[list[dict]], list[dict]]] = {"lima": _lima_single_turn}  # rows a named source keeps


def _join(instruction: str, extra: str | None) -> str:
    """Instruction plus its input/context after a blank line, as the paper builds Alpaca and Dolly prompts."""
    extra = (extra or "").strip()
    return f"{instruction}\n\n{extra}" if extra else instruction


def _first_exchange(turns: list, where: str) -> tuple[str, str]:
    """First user turn and the assistant turn after it, from ShareGPT, OpenAI-messages or plain-string lists."""
    if turns and all(isinstance(turn, str) for turn in turns):
        if len(turns) < 2:
            raise RtuneError(f"{where}: conversation has fewer than two turns")
        return turns[0], turns[1]
    user_roles, assistant_roles = {"user", "human"}, {"assistant", "gpt", "bot", "model"}
    prompt = None
    for turn in turns:
        if not isinstance(turn, dict):
            raise RtuneError(f"{where}: conversation turns must be objects or strings")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role in user_roles and prompt is None:
            prompt = content
        elif role in assistant_roles and prompt is not None:
            return str(prompt), str(content)
    raise RtuneError(f"{where}: conversation has no user turn followed by an assistant turn")


def _require_text(row: dict, required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    """Fields read as text must be text (optional ones may be null): not a number, a list or null."""
    for name in (*required, *optional):
        value = row.get(name)
        if not isinstance(value, str) and (name in required or value is not None):
            raise RtuneError(f"{where}: '{name}' must be text, found {json_type(value)}")


def row_to_pair(row: dict, where: str, prompt_field: str | None = None, completion_field: str | None = None) -> Pair:
    """Map one row of any supported layout to (prompt, completion); explicit fields win over detection."""
    native_id = str(row["id"]) if "id" in row else None
    if prompt_field or completion_field:
        for name in (prompt_field, completion_field):
            if name and name not in row:
                raise RtuneError(f"{where}: no field '{name}' (fields present: {', '.join(sorted(row))})")
        if not (prompt_field and completion_field):
            raise RtuneError("--prompt-field and --completion-field must be given together")
        for name in (prompt_field, completion_field):
            if row[name] is None:
                raise RtuneError(f"{where}: '{name}' is null, expected text")
        return Pair(str(row[prompt_field]), str(row[completion_field]), native_id)
    for prompt, completion in (("prompt", "completion"), ("instruction", "output"), ("instruction", "response")):
        if prompt in row and completion in row:
            _require_text(row, (prompt, completion), ("input", "context"), where)
            if prompt == "prompt":
                return Pair(row["prompt"], row["completion"], native_id)
            return Pair(_join(row["instruction"], row.get("context") or row.get("input")), row[completion], native_id)
    for key in ("messages", "conversations"):
        if isinstance(row.get(key), list):
            prompt, completion = _first_exchange(row[key], where)
            return Pair(prompt, completion, native_id)
    raise RtuneError(
        f"{where}: cannot tell prompt from completion (fields present: {', '.join(sorted(row))}); "
        "expected prompt/completion, instruction/input/output, instruction/context/response, "
        "messages or conversations — or name them with --prompt-field/--completion-field"
    )


def _named_rows(name: str, data_dir: Path | None) -> tuple[list[dict], str]:
    select = SELECT.get(name, lambda rows: rows)
    if data_dir is None:
        source = registry.hub_source(name)
        return select(load_rows(source.id, source.config, source.split)), ""
    path = registry.local_file(name, data_dir)
    note = registry.get(name).note if path.name.endswith("_1k.json") else ""
    return select([row for _, row in placed_rows(path)]), note


@dataclass
class BuiltSource:
    records: list[Record]
    total_rows: int
    note: str


def build_records(
    source: str,
    data_dir: str | Path | None = None,
    max_examples: int | None = None,
    seed: int = 0,
    prompt_field: str | None = None,
    completion_field: str | None = None,
) -> BuiltSource:
    """Canonical records from a named source, a local file or `hf:<id>`.

    Ids are `{source}-{row index}` (or the file's own `id`), so they stay the same across runs and
    samples. `max_examples` shuffles row indices with `random.Random(seed)` and keeps the first N, as
    the paper's data script does with seed 0.
    """
    note = ""
    if source in registry.known("training") or source in registry.known("instructions"):  # reference answers
        rows, note = _named_rows(source, registry.resolve_data_dir(data_dir))
        placed, label = [(f"{source}: row {n}", row) for n, row in enumerate(rows, start=1)], source
    elif source.startswith("hf:"):
        rows, label = load_rows(source[3:]), source[3:].replace("/", "__")
        placed = [(f"{source}: row {n}", row) for n, row in enumerate(rows, start=1)]
    elif Path(source).suffix.lower() in {".jsonl", ".json", ".csv"}:
        placed, label = placed_rows(Path(source)), Path(source).stem  # errors name FILE:LINE
    else:
        raise RtuneError(
            f"unknown source '{source}'; known sources: {', '.join(registry.known('training'))}, "
            "a .jsonl/.json/.csv file, or hf:<dataset id>"
        )
    if not placed:
        raise RtuneError(f"{source}: no rows")
    pairs = [row_to_pair(row, where, prompt_field, completion_field) for where, row in placed]
    indices = list(range(len(pairs)))
    if max_examples is not None and max_examples < len(pairs):
        random.Random(seed).shuffle(indices)
        indices = indices[:max_examples]
    records = [
        Record(
            id=pairs[i].native_id or f"{label}-{i}",
            prompt=pairs[i].prompt,
            completion=pairs[i].completion,
            source=label,
        )
        for i in indices
    ]
    return BuiltSource(records, len(pairs), note)


class BuildSettings(BaseModel):
    """What `rtune data build` is asked to do."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description=f"one of {', '.join(registry.known('training'))}, a .jsonl/.json/.csv file, or hf:<dataset id>"
    )
    out: Path = Field(description="record JSONL to write")
    data_dir: Path | None = Field(
        None, description="local copies of the named datasets (default: $RTUNE_DATA_DIR, else the hub)"
    )
    max_examples: int | None = Field(None, ge=1, description="keep a seeded random sample of N records")
    seed: int = Field(0, description="sampling seed (the paper uses 0)")
    prompt_field: str | None = Field(None, description="column holding the prompt (local files, hf:)")
    completion_field: str | None = Field(None, description="column holding the response")
    strict: bool = Field(False, description="fail on an empty prompt or completion instead of skipping it")


class BuildReport(BaseModel):
    records: int
    total_rows: int
    skipped_empty: int
    note: str


def build(settings: BuildSettings) -> BuildReport:
    """Records from the source, empty ones skipped (or refused with `strict`), written atomically."""
    from rtune.data.records import keep_nonempty, write_records
    from rtune.io import check_output

    s = settings
    check_output(s.out, inputs=[s.source])
    built = build_records(s.source, s.data_dir, s.max_examples, s.seed, s.prompt_field, s.completion_field)
    loaded = keep_nonempty(built.records, strict=s.strict, where=s.source)
    if not loaded.records:
        raise RtuneError(
            f"{s.source}: all {built.total_rows} rows have an empty prompt or completion; nothing to write"
        )
    write_records(s.out, loaded.records)
    return BuildReport(
        records=len(loaded.records), total_rows=built.total_rows, skipped_empty=loaded.skipped_empty, note=built.note
    )
