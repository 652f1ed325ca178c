"""Asking a judge model: persistent cache, bounded retries of unreadable answers, usage accounting.

The generation cache stores whatever a model says. A judge must not: an answer we cannot read
is a failure of this attempt, and caching it would make every rerun reproduce the failure for
free instead of asking again. So this caller stores an answer only once it parses, retries
unreadable ones (sampled, a new seed each time, so the retry can differ) up to a bound, and
reports the items that never gave a readable answer as failures — left out of the cache and of
the finished-items log, so the next run asks for them again. Every judge in rtune asks through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from rtune.errors import RtuneError
from rtune.generation import DecodingParams, GenerationCache, GenerationRequest, GenerationResult, Generator, from_spec
from rtune.generation.base import StreamingGenerator
from rtune.generation.cache import request_key
from rtune.judges.pricing import Usage

T = TypeVar("T")

RETRY_TEMPERATURE = 0.7  # a greedy retry would repeat the same unreadable answer
CACHE_FILE = "judge_cache.sqlite"


def attempt_params(base: DecodingParams, attempt: int) -> DecodingParams:
    """Attempt 0 decodes as asked; each retry samples with its own seed."""
    if attempt == 0:
        return base
    return base.model_copy(
        update={"temperature": max(base.temperature, RETRY_TEMPERATURE), "seed": base.seed + attempt}
    )


@dataclass
class Answer(Generic[T]):
    """The outcome for one item: `value` is None when no attempt gave a readable answer."""

    index: int
    value: T | None
    result: GenerationResult | None  # the answer `value` was read from, or the last unreadable one
    attempts: int


def open_judge(spec: str, out_dir: Path, **options) -> tuple[Generator, GenerationCache]:
    """The judge's generator (uncached: the caller decides what to store) and the run's cache in `out_dir`."""
    return from_spec(spec, **options), GenerationCache(Path(out_dir) / CACHE_FILE)


@contextmanager
def resumable(log_path: Path) -> Iterator[None]:
    """A judge call that fails for good says where the finished items are, and that a rerun resumes from them."""
    try:
        yield
    except RtuneError as exc:
        raise RtuneError(f"{exc} (finished items are saved in {log_path}; rerun the same command to resume)") from exc


def refuse_if_nothing_read(read: list, failures: list, attempts: int) -> None:
    """A run where the judge never gave a readable answer has no result: one error (exit 2), not n=0 and NaN."""
    if failures and not read:
        raise RtuneError(
            f"the judge gave no readable answer for any of the {len(failures)} items ({attempts} tries "
            f"each; the last: {failures[-1].last_answer[:80]!r}); nothing was cached, a rerun asks again"
        )


class JudgeCaller:
    """Asks through `cache` (None: keep nothing) and counts what was spent in `usage`."""

    def __init__(self, generator: Generator, cache: GenerationCache | None, max_attempts: int = 3):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.generator = generator
        self.cache = cache
        self.max_attempts = max_attempts
        self.usage = Usage()

    def ask(
        self,
        count: int,
        make_request: Callable[[int, int], GenerationRequest],
        parse: Callable[[int, GenerationResult], T | None],
    ) -> Iterator[Answer[T]]:
        """Ask about items 0..count-1; yields each item's `Answer` as soon as it is settled.

        `make_request(index, attempt)` builds the request; `parse(index, result)` returns the reading
        or None. A call that fails outright (server error after the client's own retries)
        raises: items already yielded are kept by the caller, and nothing unreadable was cached.
        """
        last: dict[int, GenerationResult] = {}
        pending = list(range(count))
        for attempt in range(self.max_attempts):
            if not pending:
                return
            requests = {index: make_request(index, attempt) for index in pending}
            unreadable: list[int] = []
            for index, result in self._results(requests):
                self.usage.record(result)
                value = parse(index, result)
                if value is None:
                    self.usage.unparseable += 1
                    last[index] = result
                    unreadable.append(index)
                    continue
                if not result.cached and self.cache is not None:
                    self.cache.put(
                        request_key(self.generator.fingerprint, requests[index]),
                        self.generator.fingerprint,
                        requests[index],
                        result,
                    )
                yield Answer(index, value, result, attempt + 1)
            pending = sorted(unreadable)
        for index in pending:
            yield Answer(index, None, last.get(index), self.max_attempts)

    def _results(self, requests: dict[int, GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Cache hits first, then the misses from the model as they complete."""
        fingerprint = self.generator.fingerprint
        keys = {index: request_key(fingerprint, request) for index, request in requests.items()}
        found = self.cache.get_many(list(keys.values())) if self.cache is not None else {}
        misses = []
        for index in requests:
            if keys[index] in found:
                yield index, found[keys[index]]
            else:
                misses.append(index)
        if not misses:
            return
        batch = [requests[index] for index in misses]
        if isinstance(self.generator, StreamingGenerator):
            for position, result in self.generator.stream(batch):
                yield misses[position], result
        else:
            yield from zip(misses, self.generator.generate(batch), strict=True)
