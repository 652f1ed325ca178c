"""lm-eval task files over our local copies of the core sets, so lm-evaluation-harness itself runs offline.

Each task file includes lm-eval's own YAML for the task (its prompt, choices, metrics, filters, few-shot
exemplars) and only swaps its hub dataset for a local JSON Lines file (`dataset_path: json`). The local
copies are rewritten into the hub's field layout first, so lm-eval renders every prompt from the same
fields it reads on the hub, independently of our loaders in `tasks`. Task names get a `rtune_` prefix
(`rtune_arc_easy`, `rtune_mmlu_anatomy`, group `rtune_mmlu`), so they never shadow lm-eval's.

HellaSwag's local copy has ctx_a and ctx_b joined; they are split again by `tasks.hellaswag_split`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rtune.data import registry
from rtune.evals.core.tasks import MMLU_CATEGORY, hellaswag_split
from rtune.io import read_jsonl, read_rows

PREFIX = "rtune_"
LETTERS = "ABCDEFGH"


def _choices(texts: list[str]) -> dict:
    return {"text": list(texts), "label": list(LETTERS[: len(texts)])}


def _arc(data_dir: Path, task: str) -> list[dict]:
    rows = read_jsonl(registry.local_file(task, data_dir))
    return [
        {
            "id": f"{task}/{i}",
            "question": row["query"].removeprefix("Question: ").removesuffix("\nAnswer:"),
            "choices": _choices(row["choices"]),
            "answerKey": LETTERS[int(row["gold"])],
        }
        for i, row in enumerate(rows)
    ]


def _openbookqa(data_dir: Path) -> list[dict]:
    rows = read_jsonl(registry.local_file("openbookqa", data_dir))
    return [
        {
            "id": f"openbookqa/{i}",
            "question_stem": row["query"],
            "choices": _choices(row["choices"]),
            "answerKey": LETTERS[int(row["gold"])],
        }
        for i, row in enumerate(rows)
    ]


def _piqa(data_dir: Path) -> list[dict]:
    path, labels_path = registry.local_files("piqa", data_dir)
    labels = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        {"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"], "label": int(label)}
        for row, label in zip(read_jsonl(path), labels, strict=True)
    ]


def _hellaswag(data_dir: Path) -> list[dict]:
    rows = []
    for i, row in enumerate(read_jsonl(registry.local_file("hellaswag", data_dir))):
        ctx_a, ctx_b = hellaswag_split(row["ctx"])
        rows.append(
            {
                "ind": i,
                "activity_label": row["activity_label"],
                "ctx_a": ctx_a,
                "ctx_b": ctx_b,
                "endings": row["endings"],
                "label": str(row["label"]),
            }
        )
    return rows


def _mmlu(data_dir: Path) -> dict[str, list[dict]]:
    """Rows per `<subject>_<split>` (hub layout: question, subject, choices, answer)."""
    out = {}
    for path in registry.local_files("mmlu", data_dir):
        subject, _, split = path.stem.rpartition("_")
        out[f"{subject}_{split}"] = [
            {
                "question": row["question"],
                "subject": subject,
                "choices": [row[f"choice{k}"] for k in range(4)],
                "answer": int(row["answer"]),
            }
            for row in read_rows(path)
        ]
    return out


def _lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _task_yaml(folder: Path, name: str, include: Path, splits: dict[str, Path], evaluated: str) -> None:
    """A task file: lm-eval's own `include`d, its dataset replaced by local files (split -> file)."""
    unused = {"training_split": None, "validation_split": None, "test_split": None}
    config = {
        "include": str(include),
        "task": PREFIX + name,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(path) for split, path in splits.items()}},
        **unused,
        f"{evaluated}_split": evaluated,
    }
    (folder / f"{PREFIX}{name}.yaml").write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML


MC_SOURCES: dict[str, tuple[str, Callable[[Path], list[dict]], str]] = {  # our task: (lm-eval yaml, rows, split)
    "arc_easy": ("arc/arc_easy.yaml", lambda d: _arc(d, "arc_easy"), "test"),
    "arc_challenge": ("arc/arc_challenge.yaml", lambda d: _arc(d, "arc_challenge"), "test"),
    "openbookqa": ("openbookqa/openbookqa.yaml", _openbookqa, "test"),
    "piqa": ("piqa/piqa.yaml", _piqa, "validation"),
    "hellaswag": ("hellaswag/hellaswag.yaml", _hellaswag, "validation"),
}


def write_tasks(tasks: list[str], data_dir: Path, folder: Path) -> list[str]:
    """Task files and data for our `tasks` in `folder` (for `TaskManager(include_path=folder)`); their lm-eval names.

    MMLU becomes one task per subject (lm-eval's `mmlu_<subject>.yaml`, dev split for few-shot) under
    a group `rtune_mmlu` weighted by size, as lm-eval's `mmlu`; GSM8K is `gsm8k_cot_llama` on the test file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base, names = _lm_eval_tasks_dir(), []
    for task in tasks:
        if task in MC_SOURCES:
            yaml, load, split = MC_SOURCES[task]
            data = _write_jsonl(folder / f"{task}.jsonl", load(data_dir))
            _task_yaml(folder, task, base / yaml, {split: data}, split)
        elif task == "mmlu":
            by_split = _mmlu(data_dir)
            for subject in MMLU_CATEGORY:
                files = {
                    split: _write_jsonl(folder / f"mmlu_{subject}_{split}.jsonl", by_split[f"{subject}_{split}"])
                    for split in ("test", "dev")
                }
                _task_yaml(folder, f"mmlu_{subject}", base / "mmlu" / "default" / f"mmlu_{subject}.yaml", files, "test")
            group = {
                "group": f"{PREFIX}mmlu",
                "task": [f"{PREFIX}mmlu_{s}" for s in MMLU_CATEGORY],
                "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
            }
            (folder / f"{PREFIX}mmlu.yaml").write_text(json.dumps(group, indent=1), encoding="utf-8")
        else:  # gsm8k: the local file already has the hub's fields (question, answer)
            _task_yaml(
                folder,
                task,
                base / "gsm8k" / "gsm8k-cot-llama.yaml",
                {"test": registry.local_file("gsm8k", data_dir)},
                "test",
            )
        names.append(PREFIX + task)
    return names
