"""Refusal mixture: append a seeded sample of refusal examples to a training set.

The paper (§5, `generate_refusal_mixture.py`) mixes N ∈ {100, 200, 500} refusals from Bianchi et
al.'s safety-tuned-llamas data (2,483 examples) into 1,000 training responses. It keeps only
"explanatory refusals", which its code identifies by a keyword rule: the lower-cased response
contains `ai` or `sorry` as a whole word (1,829 of the 2,483 pass). Sampling is shuffle-and-take
with a fixed seed; the examples are appended after the target records (training shuffles later).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rtune.data.records import Record, keep_nonempty, read_records
from rtune.data.sources import build_records
from rtune.errors import RtuneError

RefusalFilter = Literal["keyword", "none"]
FILTERS: tuple[str, ...] = ("keyword", "none")
DEFAULT_SAFETY_SOURCE = "safety-tuned-llamas"

# The paper's rule, not a refusal detector: safety-tuned-llamas responses that say "sorry" or
# mention being an "AI" are the apologetic, explanatory refusals; the rest are mostly corrective
# answers ("There is no credible evidence that…") that the paper leaves out.
EXPLANATORY_REFUSAL = re.compile(r"\b(?:ai|sorry)\b", re.IGNORECASE)


def is_explanatory_refusal(response: str) -> bool:
    return EXPLANATORY_REFUSAL.search(response) is not None


@dataclass
class SafetyMix:
    records: list[Record]  # target records first, then the sampled refusals
    target_count: int
    target_skipped_empty: int
    safety_total: int  # refusal examples read (after dropping empty ones)
    safety_skipped_empty: int
    safety_eligible: int  # left after the filter
    safety_added: int
    safety_source: str


def select_refusals(records: list[Record], refusal_filter: RefusalFilter) -> list[Record]:
    if refusal_filter == "none":
        return list(records)
    if refusal_filter == "keyword":
        return [record for record in records if is_explanatory_refusal(record.completion)]
    raise RtuneError(f"--filter must be one of {', '.join(FILTERS)}, got '{refusal_filter}'")


def sample_refusals(records: list[Record], n: int, seed: int) -> list[Record]:
    """Shuffle a copy with `random.Random(seed)` and take the first `n`, as the paper does with seed 0."""
    if n < 0:
        raise RtuneError(f"--n must be at least 0, got {n}")
    if n > len(records):
        raise RtuneError(f"asked for {n} refusal examples but only {len(records)} pass the filter")
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:n]


def mix_records(
    target: list[Record],
    safety: list[Record],
    n: int,
    refusal_filter: RefusalFilter,
    seed: int,
    safety_source: str,
    target_skipped_empty: int = 0,
    safety_skipped_empty: int = 0,
) -> SafetyMix:
    """Target records followed by `n` filtered, seeded refusals; ids must not collide."""
    eligible = select_refusals(safety, refusal_filter)
    chosen = sample_refusals(eligible, n, seed)
    target_ids = {record.id for record in target}
    clashes = [record.id for record in chosen if record.id in target_ids]
    if clashes:
        raise RtuneError(
            f"refusal example id '{clashes[0]}' is already used by a target record "
            f"({len(clashes)} clash{'es' if len(clashes) > 1 else ''}); rename the target ids"
        )
    return SafetyMix(
        records=list(target) + chosen,
        target_count=len(target),
        target_skipped_empty=target_skipped_empty,
        safety_total=len(safety),
        safety_skipped_empty=safety_skipped_empty,
        safety_eligible=len(eligible),
        safety_added=len(chosen),
        safety_source=safety_source,
    )


def build_safety_mix(
    target_path: str | Path,
    n: int,
    safety: str = DEFAULT_SAFETY_SOURCE,
    refusal_filter: RefusalFilter = "keyword",
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> SafetyMix:
    """Read the target record file and the refusal source (a named source or a local file), then mix.

    The refusals keep the `source` their loader gives them (`safety-tuned-llamas`, or the file's
    stem), so the mixed file says which records came from where.
    """
    target = read_records(target_path)
    built = build_records(safety, data_dir)
    loaded = keep_nonempty(built.records, strict=False, where=safety)
    label = built.records[0].source if built.records else safety
    return mix_records(
        target.records, loaded.records, n, refusal_filter, seed, label, target.skipped_empty, loaded.skipped_empty
    )
