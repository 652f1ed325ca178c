"""A persistent SQLite cache in front of any generator: finished calls are never paid for twice.

Keys are (generator fingerprint, full prompt or messages, decoding params). Each result is
committed as soon as the backend hands it over, so a killed job resumes where it stopped and a
finished job reruns with zero model calls. Failed calls raise before anything is stored, and an empty
answer is not stored either: it is as often a server's failure as a model's answer, so the next run asks again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from rtune.errors import RtuneError
from rtune.generation.base import GenerationRequest, GenerationResult, in_request_order, stream_results
from rtune.io import check_output, stable_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


def request_key(fingerprint: str, request: GenerationRequest) -> str:
    return stable_hash({"fingerprint": fingerprint, "request": request.model_dump(mode="json")})


class GenerationCache:
    """One SQLite file; safe to share between processes (WAL) and between the stages of a run."""

    def __init__(self, path: str | Path):
        self.path = check_output(path)  # never through a link; the folder made and writable
        try:
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise RtuneError(f"{self.path}: cannot open generation cache ({exc})") from exc
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, GenerationResult]:
        found: dict[str, GenerationResult] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, result FROM results WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    found[key] = GenerationResult.model_validate_json(blob).model_copy(update={"cached": True})
        return found

    def put(self, key: str, fingerprint: str, request: GenerationRequest, result: GenerationResult) -> None:
        blob = result.model_copy(update={"cached": False}).model_dump_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results (key, fingerprint, request, result) VALUES (?, ?, ?, ?)",
                (key, fingerprint, json.dumps(request.model_dump(mode="json"), ensure_ascii=False), blob),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedGenerator:
    """Wraps a generator: cache hits come back first (marked `cached`), misses go to the model once each.

    `refresh` ignores cached answers that are empty (stored by an older rtune), so they are asked again.
    """

    def __init__(self, inner, cache: GenerationCache | str | Path, refresh: bool = False):
        self.inner = inner
        self.fingerprint = inner.fingerprint
        self.cache = cache if isinstance(cache, GenerationCache) else GenerationCache(cache)
        self.refresh = refresh
        self.hits = 0
        self.misses = 0

    def stream(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        keys = [request_key(self.fingerprint, request) for request in requests]
        found = self.cache.get_many(keys)
        if self.refresh:
            found = {key: result for key, result in found.items() if result.text.strip()}
        waiting: dict[str, list[int]] = {}  # identical requests are generated once
        for index, key in enumerate(keys):
            if key in found:
                self.hits += 1
                yield index, found[key]
            else:
                waiting.setdefault(key, []).append(index)
        unique = list(waiting)
        if not unique:
            return
        for position, result in stream_results(self.inner, [requests[waiting[key][0]] for key in unique]):
            key = unique[position]
            if result.text.strip():
                self.cache.put(key, self.fingerprint, requests[waiting[key][0]], result)
            self.misses += 1
            for index in waiting[key]:
                yield index, result

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(self.stream(requests), len(requests))
