"""Registry of training-data sources, each turned into canonical records.

Named sources read local files laid out like the shared data directory (`lima/lima.json`,
`alpaca/…`, `dolly/…`, `safety_tuned_llamas/…`) when a data dir is given (or `RTUNE_DATA_DIR` is
set), else the Hugging Face hub. Any local `.jsonl/.json/.csv` file and `hf:<dataset id>` work too.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rtune.data.records import Record
from rtune.errors import RtuneError
from rtune.io import read_json, read_jsonl

DATA_DIR_ENV = "RTUNE_DATA_DIR"


@dataclass(frozen=True)
class Pair:
    prompt: str
    completion: str
    native_id: str | None = None


@dataclass(frozen=True)
class NamedSource:
    """Where a named dataset lives locally (first existing candidate wins) and on the hub."""

    local_files: tuple[str, ...]
    hub_id: str | None
    select: Callable[[list[dict]], list[dict]] = lambda rows: rows
    note: str = ""


def _lima_single_turn(rows: list[dict]) -> list[dict]:
    """The paper trains on the first 1,000 rows of GAIR/lima, which are its single-turn examples."""
    single = [row for row in rows if not row.get("history") and not (isinstance(row.get("conversations"), list) and len(row["conversations"]) > 2)]
    return single[:1000]


SOURCES: dict[str, NamedSource] = {
    "lima": NamedSource(("lima/lima.json", "lima/lima_train_1000.jsonl"), "GAIR/lima", _lima_single_turn),
    "alpaca": NamedSource(
        ("alpaca/alpaca_data.json", "alpaca/alpaca_data_1k.json"),
        "tatsu-lab/alpaca",
        note="with only alpaca_data_1k.json present this is the 1,000-example Alpaca sample, not the full 52K",
    ),
    "alpaca-cleaned": NamedSource(("alpaca/alpaca_data_cleaned.json", "alpaca_cleaned/alpaca_data_cleaned.json"), "yahma/alpaca-cleaned"),
    "dolly": NamedSource(("dolly/databricks-dolly-15k.jsonl",), "databricks/databricks-dolly-15k"),
    "safety-tuned-llamas": NamedSource(("safety_tuned_llamas/safety_only_data_Instructions.json",), None),
}


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The explicit `--data-dir`, else `RTUNE_DATA_DIR`, else None (meaning: use the hub)."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise RtuneError(f"data dir {path} does not exist or is not a directory")
    return path


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


def row_to_pair(row: dict, where: str, prompt_field: str | None = None, completion_field: str | None = None) -> Pair:
    """Map one row of any supported layout to (prompt, completion); explicit fields win over detection."""
    native_id = str(row["id"]) if "id" in row else None
    if prompt_field or completion_field:
        for name in (prompt_field, completion_field):
            if name and name not in row:
                raise RtuneError(f"{where}: no field '{name}' (fields present: {', '.join(sorted(row))})")
        if not (prompt_field and completion_field):
            raise RtuneError("--prompt-field and --completion-field must be given together")
        return Pair(str(row[prompt_field]), str(row[completion_field]), native_id)
    if "prompt" in row and "completion" in row:
        return Pair(row["prompt"], row["completion"], native_id)
    if "instruction" in row and "output" in row:
        return Pair(_join(row["instruction"], row.get("input")), row["output"], native_id)
    if "instruction" in row and "response" in row:
        return Pair(_join(row["instruction"], row.get("context") or row.get("input")), row["response"], native_id)
    for key in ("messages", "conversations"):
        if isinstance(row.get(key), list):
            prompt, completion = _first_exchange(row[key], where)
            return Pair(prompt, completion, native_id)
    raise RtuneError(
        f"{where}: cannot tell prompt from completion (fields present: {', '.join(sorted(row))}); "
        "expected prompt/completion, instruction/input/output, instruction/context/response, "
        "messages or conversations — or name them with --prompt-field/--completion-field"
    )


def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise RtuneError(f"{path}: cannot parse CSV ({exc})") from exc


def read_rows(path: Path) -> list[dict]:
    """Rows of a local .jsonl, .json (a list of objects) or .csv file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise RtuneError(f"{path}: expected a JSON list of objects")
        return data
    if suffix == ".csv":
        if not path.exists():
            raise RtuneError(f"{path}: no such file")
        return _read_csv(path)
    raise RtuneError(f"{path}: unsupported file type '{suffix}' (expected .jsonl, .json or .csv)")


def _hub_rows(dataset_id: str, split: str = "train") -> list[dict]:
    from datasets import load_dataset

    try:
        return list(load_dataset(dataset_id, split=split))
    except Exception as exc:  # the hub raises many types; one message covers offline, gated, missing
        raise RtuneError(f"could not load '{dataset_id}' from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                         "offline, pass --data-dir with local copies") from exc


def _named_rows(name: str, data_dir: Path | None) -> tuple[list[dict], str]:
    source = SOURCES[name]
    if data_dir is not None:
        for relative in source.local_files:
            path = data_dir / relative
            if path.exists():
                note = source.note if relative.endswith("_1k.json") else ""
                return source.select(read_rows(path)), note
        raise RtuneError(f"source '{name}': none of {', '.join(source.local_files)} found under {data_dir}")
    if source.hub_id is None:
        raise RtuneError(f"source '{name}' has no hub copy; pass --data-dir (or set {DATA_DIR_ENV}) with {source.local_files[0]}")
    return source.select(_hub_rows(source.hub_id)), ""


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
    if source in SOURCES:
        rows, note = _named_rows(source, resolve_data_dir(data_dir))
        label = source
    elif source.startswith("hf:"):
        rows, label = _hub_rows(source[3:]), source[3:].replace("/", "__")
    elif Path(source).suffix.lower() in {".jsonl", ".json", ".csv"}:
        path = Path(source)
        rows, label = read_rows(path), path.stem
    else:
        raise RtuneError(f"unknown source '{source}'; known sources: {', '.join(SOURCES)}, a .jsonl/.json/.csv file, or hf:<dataset id>")
    pairs = [row_to_pair(row, f"{source}: row {index + 1}", prompt_field, completion_field) for index, row in enumerate(rows)]
    indices = list(range(len(pairs)))
    if max_examples is not None and max_examples < len(pairs):
        random.Random(seed).shuffle(indices)
        indices = indices[:max_examples]
    records = [
        Record(id=pairs[i].native_id or f"{label}-{i}", prompt=pairs[i].prompt, completion=pairs[i].completion, source=label)
        for i in indices
    ]
    return BuiltSource(records, len(pairs), note)
