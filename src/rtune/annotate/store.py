"""Judgments on disk: SQLite in WAL mode, one row per judgment, committed the moment it is made.

Each row holds the annotator, the pair id, the choice as the person saw it (left / right / tie /
skip), the display order (`shown_first`, which output was on the left) and a UTC timestamp.
Undo never deletes: it stamps the annotator's latest live judgment with `undone_at`, so the
history stays; at most one live judgment per (annotator, pair) is enforced by a partial unique
index. Every call opens its own connection, so a server's worker threads, or several servers
(one per annotator) on the same folder, can share the file; a killed process loses nothing
committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from rtune.errors import RtuneError
from rtune.io import check_output

STORE_FILE = "judgments.sqlite"
Choice = Literal["left", "right", "tie", "skip"]
CHOICES: tuple[str, ...] = ("left", "right", "tie", "skip")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'skip')),
    shown_first INTEGER NOT NULL CHECK (shown_first IN (1, 2)),
    created_at TEXT NOT NULL,
    undone_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_judgment ON judgments (annotator, pair_id) WHERE undone_at IS NULL;
"""


_COLUMNS = ("seq", "annotator", "pair_id", "choice", "shown_first", "created_at", "undone_at")


class Judgment(BaseModel):
    seq: int
    annotator: str
    pair_id: str
    choice: Choice
    shown_first: Literal[1, 2]  # the output (1 = reference, 2 = model) displayed on the left
    created_at: str
    undone_at: str | None = None


class AlreadyJudged(RtuneError):
    """The annotator already has a live judgment for this pair (a second tab, or a double submit)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Store:
    def __init__(self, path: str | Path):
        self.path = check_output(path)  # never through a link; the folder made and writable
        try:
            with self._connect() as db:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RtuneError(f"{self.path}: not a judgments database ({exc})") from exc
        if mode.lower() != "wal":
            raise RtuneError(f"{self.path}: SQLite refused WAL mode (journal mode is {mode}); use a local disk")

    @classmethod
    def in_dir(cls, directory: str | Path) -> Store:
        return cls(Path(directory) / STORE_FILE)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")  # a judgment is on disk when the request returns
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _row(row: tuple) -> Judgment:
        return Judgment(**dict(zip(_COLUMNS, row, strict=True)))

    def record(self, annotator: str, pair_id: str, choice: Choice, shown_first: int) -> Judgment:
        """Store one judgment; a pair the annotator already judged (and did not undo) is refused."""
        if choice not in CHOICES:
            raise RtuneError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        created = _now()
        with self._write() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO judgments (annotator, pair_id, choice, shown_first, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (annotator, pair_id, choice, shown_first, created),
                )
            except sqlite3.IntegrityError as exc:
                if "one_live_judgment" in str(exc) or "UNIQUE" in str(exc):
                    raise AlreadyJudged(f"{annotator} already judged pair {pair_id}; undo it first") from None
                raise RtuneError(f"cannot store judgment: {exc}") from None
            seq = cursor.lastrowid
        return Judgment(
            seq=seq, annotator=annotator, pair_id=pair_id, choice=choice, shown_first=shown_first, created_at=created
        )

    def undo(self, annotator: str) -> Judgment | None:
        """Withdraw the annotator's latest live judgment; None when there is none."""
        with self._write() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM judgments WHERE annotator = ? AND undone_at IS NULL "
                "ORDER BY seq DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is None:
                return None
            undone = _now()
            db.execute("UPDATE judgments SET undone_at = ? WHERE seq = ?", (undone, row[0]))
        return self._row(row).model_copy(update={"undone_at": undone})

    def judgments(self, annotator: str | None = None, *, include_undone: bool = False) -> list[Judgment]:
        """Judgments in the order they were made: the live ones, or the whole history."""
        where, args = [], []
        if not include_undone:
            where.append("undone_at IS NULL")
        if annotator is not None:
            where.append("annotator = ?")
            args.append(annotator)
        condition = " WHERE " + " AND ".join(where) if where else ""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM judgments{condition} ORDER BY seq"
        with self._connect() as db:
            return [self._row(row) for row in db.execute(sql, args).fetchall()]

    def annotators(self) -> list[str]:
        """Annotators with at least one live judgment, in the order they started."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT annotator FROM judgments WHERE undone_at IS NULL GROUP BY annotator ORDER BY MIN(seq)"
            )
            return [row[0] for row in rows.fetchall()]

    def journal_mode(self) -> str:
        with self._connect() as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]
