"""File helpers: atomic writes, line-numbered JSON reading, append-only logs for resumable stages."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from rtune.errors import RtuneError


def check_output(path: str | Path, *, inputs: Iterable[str | Path | None] = (), directory: bool = False) -> Path:
    """Refuse, before any work, an output that would overwrite an input, cannot be written, is a symbolic link
    or would write through one in a run folder (`directory`: a folder rtune fills). Creates the folder it needs."""
    path = Path(path)
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise RtuneError(f"{path}: is also the input {source}; write the output elsewhere")
    if directory and path.exists() and not path.is_dir():
        raise RtuneError(f"{path}: exists and is not a folder (expected a run folder)")
    if not directory and path.is_dir():
        raise RtuneError(f"{path}: is a folder; expected a file name")
    if not directory and path.is_symlink():  # the write would replace the link: what the user linked to goes stale
        raise RtuneError(f"{path}: is a symbolic link; rtune never writes over links (remove it, or name its target)")
    if directory and path.is_dir():
        links = sorted(entry.name for entry in path.iterdir() if entry.is_symlink())
        if links:
            raise RtuneError(
                f"{path / links[0]}: is a symbolic link; rtune never writes through links in a run folder (remove it)"
            )
    folder = path if directory else path.parent
    blocker = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise RtuneError(f"{path}: cannot write there: {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".rtune-write-check.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise RtuneError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete the temporary files a killed writer of `path` left (`.NAME.PID.XXXX.tmp` whose PID is gone)."""
    prefix = f".{path.name}."
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        pid = stale.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename, so readers never see half a file.

    The temporary name carries our PID, so the next write of `path` removes what a killed writer left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def _drop_cut_short_tail(handle) -> None:
    """Remove a last line a crash left unterminated, so the next row starts on a line of its own."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    handle.seek(0)
    handle.truncate(handle.read().rfind(b"\n") + 1)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one finished item and force it to disk: a crash loses at most the item in flight.

    A log that is a symbolic link is refused: a resumed run would otherwise cut and fill the link's target.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RtuneError(f"{path}: is a symbolic link; rtune never writes through links (remove it)") from None
        raise
    with os.fdopen(fd, "rb+") as handle:
        _drop_cut_short_tail(handle)
        handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def _read_text(path: Path) -> str:
    """The whole file as text (a UTF-8 BOM is fine); a file that is not UTF-8 is named with the line it breaks on."""
    if not path.exists():
        raise RtuneError(f"{path}: no such file")
    if path.is_dir():
        raise RtuneError(f"{path}: is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RtuneError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        hint = " (it looks like UTF-16: save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise RtuneError(f"{path}:{line}: not UTF-8 text{hint}") from None


# \uD800-\uDFFF escapes, and one that is not half of a pair: JSON allows it, but it is not text and cannot be written.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(
    r"(?<!\\)\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})(?<!\\)\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _holds_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(key) or _holds_lone_surrogate(item) for key, item in value.items())
    return isinstance(value, list) and any(map(_holds_lone_surrogate, value))


def _refuse_lone_surrogate(path: Path, text: str, value: Any, line: int = 1) -> None:
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        match = _LONE_SURROGATE.search(text)
        where = f"{path}:{line + text.count(chr(10), 0, match.start())}" if match else str(path)
        raise RtuneError(
            f"{where}: {match.group() if match else 'a string'} is half of a UTF-16 surrogate pair, not text"
        )


def read_json(path: str | Path) -> Any:
    path = Path(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RtuneError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from exc
    _refuse_lone_surrogate(path, text, data)
    return data


def _numbered_jsonl(path: Path, tolerate_truncated_tail: bool) -> list[tuple[int, dict]]:
    lines = _read_text(path).split("\n")
    rows: list[tuple[int, dict]] = []
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
        _refuse_lone_surrogate(path, line, row, number)
        rows.append((number, row))
    return rows


def read_jsonl(path: str | Path, *, tolerate_truncated_tail: bool = False) -> list[dict]:
    """Read JSON Lines; every error names the file and line.

    `tolerate_truncated_tail` drops an unterminated last line, which is what a crash during
    `append_jsonl` leaves behind; resumable stages read their own logs with it.
    """
    return [row for _, row in _numbered_jsonl(Path(path), tolerate_truncated_tail)]


def json_type(value: Any) -> str:
    """A JSON value's type as messages name it: null, true/false, a number, a list, an object, text."""
    kinds = {
        type(None): "null",
        bool: "true/false",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
        str: "text",
    }
    return kinds.get(type(value), type(value).__name__)


def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise RtuneError(f"{path}: cannot parse CSV ({exc})") from exc


def placed_rows(path: Path) -> list[tuple[str, dict]]:
    """Rows of a local .jsonl, .json (a list of objects) or .csv file, each with where it is for error messages:
    `FILE:LINE` for JSON Lines, `FILE: row N` otherwise."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [(f"{path}:{number}", row) for number, row in _numbered_jsonl(path, False)]
    if suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise RtuneError(f"{path}: expected a JSON list of objects")
    elif suffix == ".csv":
        if not path.exists():
            raise RtuneError(f"{path}: no such file")
        data = _read_csv(path)
    else:
        raise RtuneError(f"{path}: unsupported file type '{suffix}' (expected .jsonl, .json or .csv)")
    return [(f"{path}: row {number}", row) for number, row in enumerate(data, start=1)]


def read_rows(path: Path) -> list[dict]:
    """Rows of a local .jsonl, .json (a list of objects) or .csv file."""
    return [row for _, row in placed_rows(path)]


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


class ResumableLog:
    """An append-only JSONL of finished items, keyed by one field: what a long stage reads back to resume.

    Each row is forced to disk as it is appended; a last line cut short by a crash is ignored on
    reading and removed by the next append, so a killed run loses at most the item in flight.
    """

    def __init__(self, path: str | Path, key: str = "key"):
        self.path = Path(path)
        self.key = key

    def done(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        rows = read_jsonl(self.path, tolerate_truncated_tail=True)
        return {str(row[self.key]): row for row in rows if self.key in row}

    def append(self, row: dict) -> None:
        append_jsonl(self.path, row)
