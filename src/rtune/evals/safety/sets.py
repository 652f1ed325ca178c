"""The four benchmarks as `SafetyItem`s, and the seeded per-set sample `--limit` asks for.

Each set is read from its local copy under the data dir (the registry knows where), else from the
walledai hub mirror the paper used. Item ids are stable positions in the set, so outputs files and
per-item logs can be matched back to prompts.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from rtune.data import hub, registry
from rtune.errors import RtuneError
from rtune.io import read_rows

SETS: tuple[str, ...] = ("advbench", "harmbench", "malicious_instruct", "xstest")
SET_TITLES = {
    "advbench": "AdvBench",
    "harmbench": "HarmBench",
    "malicious_instruct": "MaliciousInstruct",
    "xstest": "XSTest",
}
HARMBENCH_SUBSETS = ("standard", "contextual")  # copyright behaviours are not refusal tests


class SafetyItem(BaseModel):
    id: str
    set: str
    subset: str  # harmful | standard | contextual | safe | unsafe
    prompt: str
    harmful: bool  # True: a refusal is the wanted answer; False (XSTest safe): compliance is
    category: str = ""


def _rows(name: str, data_dir: Path | None, config: str | None = None) -> list[dict]:
    """Rows of the set's local file, else of its hub mirror (`config` picks a hub subset)."""
    if data_dir:
        return read_rows(registry.local_file(name, data_dir))
    source = registry.hub_source(name)
    return hub.load_rows(source.id, config or source.config, source.split)


def _strip_quotes(text: str) -> str:
    text = text.strip()
    return text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] == '"' else text


def load_advbench(data_dir: Path | None) -> list[SafetyItem]:
    field = "goal" if data_dir else "prompt"
    return [
        SafetyItem(id=f"advbench-{i}", set="advbench", subset="harmful", prompt=_strip_quotes(row[field]), harmful=True)
        for i, row in enumerate(_rows("advbench", data_dir))
    ]


def harmbench_prompt(behavior: str, context: str | None) -> str:
    """Contextual behaviours carry their context first, as the paper builds them."""
    return f"{context}\n\n---\n\n{behavior}" if context else behavior


def load_harmbench(data_dir: Path | None) -> list[SafetyItem]:
    """Standard (200) and contextual (100) behaviours: one CSV locally, one hub config per subset."""
    if data_dir:
        behaviours = [
            (
                row["FunctionalCategory"],
                row["Behavior"],
                row.get("ContextString") or None,
                row.get("SemanticCategory", ""),
            )
            for row in _rows("harmbench", data_dir)
        ]
    else:
        behaviours = [
            (subset, row["prompt"], row.get("context") or None, row.get("category", ""))
            for subset in HARMBENCH_SUBSETS
            for row in _rows("harmbench", None, subset)
        ]
    items, counters = [], defaultdict(int)
    for subset, behavior, context, category in behaviours:
        if subset not in HARMBENCH_SUBSETS:
            continue
        items.append(
            SafetyItem(
                id=f"harmbench-{subset}-{counters[subset]}",
                set="harmbench",
                subset=subset,
                prompt=harmbench_prompt(behavior, context if subset == "contextual" else None),
                harmful=True,
                category=category,
            )
        )
        counters[subset] += 1
    return items


def load_malicious_instruct(data_dir: Path | None) -> list[SafetyItem]:
    if data_dir:
        text = registry.local_file("malicious_instruct", data_dir).read_text(encoding="utf-8")
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        prompts = [row["prompt"] for row in _rows("malicious_instruct", None)]
    return [
        SafetyItem(id=f"malicious_instruct-{i}", set="malicious_instruct", subset="harmful", prompt=p, harmful=True)
        for i, p in enumerate(prompts)
    ]


def load_xstest(data_dir: Path | None) -> list[SafetyItem]:
    """XSTest v2: 250 safe prompts (compliance wanted) and 200 unsafe contrasts (refusal wanted)."""
    items = []
    for i, row in enumerate(_rows("xstest", data_dir)):
        label = str(row["label"]).strip().lower()
        if label not in ("safe", "unsafe"):
            raise RtuneError(f"XSTest row {i + 1}: label must be safe or unsafe, got '{row['label']}'")
        items.append(
            SafetyItem(
                id=f"xstest-{i}",
                set="xstest",
                subset=label,
                prompt=row["prompt"],
                harmful=label == "unsafe",
                category=str(row.get("type", "")),
            )
        )
    return items


LOADERS: dict[str, Callable[[Path | None], list[SafetyItem]]] = {
    "advbench": load_advbench,
    "harmbench": load_harmbench,
    "malicious_instruct": load_malicious_instruct,
    "xstest": load_xstest,
}


def parse_sets(text: str) -> tuple[str, ...]:
    """Comma-separated set names, deduplicated in the order given."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in SETS]
    if unknown or not names:
        raise RtuneError(f"--sets: unknown set '{unknown[0] if unknown else text}'; choose from {', '.join(SETS)}")
    return names


def sample_items(items: list[SafetyItem], limit: int | None, seed: int) -> list[SafetyItem]:
    """At most `limit` items, spread over the subsets in proportion to their size (largest remainder), seeded.

    A plain head would give XSTest's first rows only (all safe); proportional sampling keeps both
    halves. The kept items stay in file order.
    """
    if limit is None or limit >= len(items):
        return items
    by_subset: dict[str, list[SafetyItem]] = defaultdict(list)
    for item in items:
        by_subset[item.subset].append(item)
    quotas = {name: limit * len(group) / len(items) for name, group in by_subset.items()}
    counts = {name: int(quota) for name, quota in quotas.items()}
    for name in sorted(quotas, key=lambda n: (counts[n] - quotas[n], n))[: limit - sum(counts.values())]:
        counts[name] += 1
    rng = random.Random(seed)
    kept = {item.id for name, group in sorted(by_subset.items()) for item in rng.sample(group, counts[name])}
    return [item for item in items if item.id in kept]


def load_items(
    sets: tuple[str, ...],
    data_dir: str | Path | None,
    limit: int | None,
    seed: int,
    limits: dict[str, int] | None = None,
) -> list[SafetyItem]:
    """The prompts of `sets`, at most `limit` per set (`limits` per set name overrides it); same seed, same sample."""
    resolved = registry.resolve_data_dir(data_dir)
    return [
        item for name in sets for item in sample_items(LOADERS[name](resolved), (limits or {}).get(name, limit), seed)
    ]
