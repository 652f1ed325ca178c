"""File helpers: atomic writes, line-numbered JSON reading, append-only logs for resumable stages."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from rtune.errors import RtuneError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _drop_cut_short_tail(path: Path) -> None:
    """Remove a last line a crash left unterminated, so the next row starts on a line of its own."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one finished item and force it to disk: a crash loses at most the item in flight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _drop_cut_short_tail(path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _open_text(path: Path):
    if not path.exists():
        raise RtuneError(f"{path}: no such file")
    if path.is_dir():
        raise RtuneError(f"{path}: is a directory, expected a file")
    try:
        return path.open(encoding="utf-8")
    except OSError as exc:
        raise RtuneError(f"{path}: cannot read ({exc.strerror})") from exc


def read_json(path: str | Path) -> Any:
    path = Path(path)
    with _open_text(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as exc:
            raise RtuneError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from exc
        except UnicodeDecodeError as exc:
            raise RtuneError(f"{path}: not UTF-8 text") from exc


def read_jsonl(path: str | Path, *, tolerate_truncated_tail: bool = False) -> list[dict]:
    """Read JSON Lines; every error names the file and line.

    `tolerate_truncated_tail` drops an unterminated last line, which is what a crash during
    `append_jsonl` leaves behind; resumable stages read their own logs with it.
    """
    path = Path(path)
    rows: list[dict] = []
    with _open_text(path) as handle:
        try:
            lines = handle.read().split("\n")
        except UnicodeDecodeError as exc:
            raise RtuneError(f"{path}: not UTF-8 text") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_truncated_tail and number == len(lines):
                break
            raise RtuneError(f"{path}:{number}: malformed JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise RtuneError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """Hash of a JSON-serialisable value that does not depend on key order: the cache key of every stage."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
