"""The canonical training record `{id, prompt, completion, source}` and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rtune.errors import RtuneError
from rtune.io import json_type, read_jsonl, write_jsonl

REQUIRED_FIELDS = ("id", "prompt", "completion", "source")


class Record(BaseModel):
    """One instruction/response pair; RT training uses only `completion`, IT uses both."""

    id: str
    prompt: str
    completion: str
    source: str
    meta: dict[str, Any] = Field(default_factory=dict)


@dataclass
class LoadedRecords:
    records: list[Record]
    skipped_empty: int


def validate_row(row: dict, where: str) -> Record:
    """Turn a parsed JSON object into a Record, naming the field and the place when it is wrong."""
    for name in REQUIRED_FIELDS:
        if name not in row:
            raise RtuneError(f"{where}: record has no field '{name}' (expected fields: {', '.join(REQUIRED_FIELDS)})")
    for name in ("prompt", "completion", "source"):
        if not isinstance(row[name], str):
            raise RtuneError(f"{where}: field '{name}' must be text, found {json_type(row[name])}")
    if not isinstance(row["id"], (str, int)):
        raise RtuneError(f"{where}: field 'id' must be text, found {json_type(row['id'])}")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise RtuneError(f"{where}: field 'meta' must be an object")
    return Record(
        id=str(row["id"]), prompt=row["prompt"], completion=row["completion"], source=row["source"], meta=meta
    )


def is_empty(record: Record) -> bool:
    return not record.prompt.strip() or not record.completion.strip()


def keep_nonempty(records: list[Record], *, strict: bool, where: str) -> LoadedRecords:
    """Drop records with an empty prompt or completion (counted), or fail on the first with `strict`."""
    kept: list[Record] = []
    for record in records:
        if is_empty(record):
            if strict:
                field = "prompt" if not record.prompt.strip() else "completion"
                raise RtuneError(f"{where}: record '{record.id}' has an empty {field} (--strict)")
            continue
        kept.append(record)
    return LoadedRecords(kept, len(records) - len(kept))


def read_records(path: str | Path, *, strict: bool = False) -> LoadedRecords:
    """Read a record JSONL file; empty prompts/completions are skipped with a count unless `strict`."""
    rows = read_jsonl(path)
    if not rows:
        raise RtuneError(f"{path}: no records (the file is empty)")
    records: list[Record] = []
    seen: set[str] = set()
    for index, row in enumerate(rows, start=1):
        record = validate_row(row, f"{path}: record {index}")
        if record.id in seen:
            raise RtuneError(f"{path}: record {index}: duplicate id '{record.id}'")
        seen.add(record.id)
        records.append(record)
    return keep_nonempty(records, strict=strict, where=str(path))


def write_records(path: str | Path, records: list[Record]) -> None:
    """Write records as JSONL (atomically); `meta` appears only when it holds something."""
    write_jsonl(path, (record.model_dump(exclude=set() if record.meta else {"meta"}) for record in records))
