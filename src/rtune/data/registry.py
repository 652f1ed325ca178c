"""Every dataset rtune knows by name: where its local copy lives under a data dir, where it lives on the hub.

One table for all of them: training sources (`lima`, `alpaca`, …), instruction sets (`alpaca_eval`,
`just_eval`), core benchmarks, safety benchmarks, and the two sets packaged with rtune (`demo`,
`heldout`). The loaders that turn rows into records, instructions or benchmark items live with the
code that uses them and ask this table where to read. Local layouts follow the shared data folder
(see its SOURCES.md); a data dir is `--data-dir`, else `RTUNE_DATA_DIR`, else none (the hub).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import rtune.resources
from rtune.errors import RtuneError
from rtune.io import sha256_file, stable_hash

DATA_DIR_ENV = "RTUNE_DATA_DIR"
PACKAGED = Path(rtune.resources.__file__).parent
Kind = Literal["training", "instructions", "core", "safety", "packaged"]


@dataclass(frozen=True)
class HubSource:
    id: str
    config: str | None = None
    split: str | None = "train"  # None: every split


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: Kind
    local: tuple[
        tuple[str, ...], ...
    ]  # alternatives (first complete one wins), each a tuple of paths or globs under the data dir
    hub: HubSource | None = None
    note: str = ""  # said when the local copy is not the whole dataset
    packaged: str | None = None  # path under rtune/resources for the packaged sets


def _alternatives(*paths: str) -> tuple[tuple[str, ...], ...]:
    return tuple((path,) for path in paths)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        # training sources
        Dataset(
            "lima", "training", _alternatives("lima/lima.json", "lima/lima_train_1000.jsonl"), HubSource("GAIR/lima")
        ),
        Dataset(
            "alpaca",
            "training",
            _alternatives("alpaca/alpaca_data.json", "alpaca/alpaca_data_1k.json"),
            HubSource("tatsu-lab/alpaca"),
            note="with only alpaca_data_1k.json present this is the 1,000-example Alpaca sample, not the full 52K",
        ),
        Dataset(
            "alpaca-cleaned",
            "training",
            _alternatives("alpaca/alpaca_data_cleaned.json", "alpaca_cleaned/alpaca_data_cleaned.json"),
            HubSource("yahma/alpaca-cleaned"),
        ),
        Dataset(
            "dolly",
            "training",
            _alternatives("dolly/databricks-dolly-15k.jsonl"),
            HubSource("databricks/databricks-dolly-15k"),
        ),
        Dataset(
            "safety-tuned-llamas", "training", _alternatives("safety_tuned_llamas/safety_only_data_Instructions.json")
        ),
        # instruction sets models answer
        Dataset(
            "alpaca_eval",
            "instructions",
            _alternatives("alpaca_eval/alpaca_eval_805.jsonl"),
            HubSource("tatsu-lab/alpaca_eval", "alpaca_eval", "eval"),
        ),
        Dataset(
            "just_eval",
            "instructions",
            _alternatives("just_eval/just_eval_instructions.jsonl"),
            HubSource("re-align/just-eval-instruct", None, "test"),
        ),
        # core capabilities
        Dataset(
            "mmlu", "core", (("mmlu/test/*_test.csv", "mmlu/dev/*_dev.csv"),), HubSource("cais/mmlu", "all", "test")
        ),
        Dataset(
            "arc_easy", "core", _alternatives("arc/arc_easy.jsonl"), HubSource("allenai/ai2_arc", "ARC-Easy", "test")
        ),
        Dataset(
            "arc_challenge",
            "core",
            _alternatives("arc/arc_challenge.jsonl"),
            HubSource("allenai/ai2_arc", "ARC-Challenge", "test"),
        ),
        Dataset(
            "hellaswag",
            "core",
            _alternatives("hellaswag/hellaswag_val.jsonl"),
            HubSource("Rowan/hellaswag", None, "validation"),
        ),
        Dataset(
            "openbookqa",
            "core",
            _alternatives("openbookqa/openbook_qa.jsonl"),
            HubSource("allenai/openbookqa", "main", "test"),
        ),
        Dataset(
            "piqa",
            "core",
            (("piqa/valid.jsonl", "piqa/valid-labels.lst"),),
            HubSource("baber/piqa", None, "validation"),
        ),
        Dataset("gsm8k", "core", _alternatives("gsm8k/test.jsonl"), HubSource("openai/gsm8k", "main", "test")),
        # safety
        Dataset(
            "advbench",
            "safety",
            _alternatives("advbench/harmful_behaviors.csv"),
            HubSource("walledai/AdvBench", None, None),
        ),
        Dataset(
            "harmbench",
            "safety",
            _alternatives("harmbench/harmbench_behaviors_text_all.csv"),
            HubSource("walledai/HarmBench", None, None),
        ),
        Dataset(
            "malicious_instruct",
            "safety",
            _alternatives("malicious_instruct/MaliciousInstruct.txt"),
            HubSource("walledai/MaliciousInstruct", None, None),
        ),
        Dataset(
            "xstest", "safety", _alternatives("xstest/xstest_prompts.csv"), HubSource("walledai/XSTest", None, None)
        ),
        # packaged with rtune (original text written for it)
        Dataset("demo", "packaged", (), packaged="demo/train.jsonl"),
        Dataset("heldout", "packaged", (), packaged="demo/heldout.jsonl"),
    )
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


def known(kind: Kind | None = None) -> list[str]:
    return [name for name, d in DATASETS.items() if kind is None or d.kind == kind]


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise RtuneError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _expand(root: Path, pattern: str) -> list[Path]:
    if any(ch in pattern for ch in "*?["):
        return sorted(root.glob(pattern))
    return [root / pattern] if (root / pattern).exists() else []


def local_files(name: str, data_dir: Path | None) -> list[Path]:
    """The files of the first complete local alternative; an error naming what was expected when none is there."""
    dataset = get(name)
    if dataset.packaged:
        return [PACKAGED / dataset.packaged]
    for alternative in dataset.local:
        found = [_expand(data_dir, pattern) for pattern in alternative]
        if all(found):
            return [path for paths in found for path in paths]
    expected = " or ".join(" + ".join(alternative) for alternative in dataset.local)
    raise RtuneError(f"dataset '{name}': {expected} not found under {data_dir}")


def local_file(name: str, data_dir: Path) -> Path:
    """The single local file of a dataset stored as one file."""
    return local_files(name, data_dir)[0]


def hub_source(name: str) -> HubSource:
    dataset = get(name)
    if dataset.hub is None:
        wanted = " + ".join(dataset.local[0]) if dataset.local else dataset.name
        raise RtuneError(
            f"dataset '{name}' has no hub copy; pass --data-dir (or set {DATA_DIR_ENV}) to a folder holding {wanted}"
        )
    return dataset.hub


def content_fingerprint(name: str, data_dir: Path | None) -> str | dict:
    """What identifies a dataset's content for caching: the sha256 of its local files, or its hub source."""
    if get(name).packaged is None and data_dir is None:
        return {"hub": name}
    files = local_files(name, data_dir)
    return sha256_file(files[0]) if len(files) == 1 else stable_hash([(path.name, sha256_file(path)) for path in files])
