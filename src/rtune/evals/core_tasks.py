"""The core benchmarks as data: where each set lives, and how lm-eval turns one of its rows into a prompt.

Every multiple-choice set, whatever its file format (llm-foundry ICL JSONL, the PIQA release, CSV,
the Hugging Face hub), is normalised to one `MCItem`: the question text exactly as lm-eval's
`doc_to_text` renders it, the answer choices as lm-eval's `doc_to_choice` gives them (without the
target delimiter), and the gold index. Local files are read from a data directory laid out like
`../shared/data`; without one, the hub datasets lm-eval itself uses are loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rtune.data.sources import read_rows
from rtune.errors import RtuneError
from rtune.io import read_jsonl


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question, ready to prompt."""

    id: str
    text: str  # lm-eval doc_to_text
    choices: tuple[str, ...]  # continuations, without the " " target delimiter
    gold: int
    subject: str | None = None  # MMLU subject; None elsewhere

    @property
    def answer(self) -> str:
        return self.choices[self.gold]


@dataclass(frozen=True)
class GSMItem:
    id: str
    question: str
    target: str  # the number after "####", as lm-eval's doc_to_target


@dataclass(frozen=True)
class MCTask:
    """A multiple-choice benchmark: how to load it and which metrics lm-eval reports for it."""

    name: str
    load: Callable[[Path | None], list[MCItem]]
    hub_dataset: str
    local_files: str
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    version: str = "1.0"
    load_fewshot: Callable[[Path | None], list[MCItem]] | None = None  # few-shot pool, first-n order
    description: Callable[[str | None], str] = field(default=lambda subject: "")


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in row]
    if missing:
        raise RtuneError(f"{where}: missing field(s) {', '.join(missing)}; expected {', '.join(keys)}")


def _local(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.exists():
        raise RtuneError(f"{path}: not found in the data dir (expected {relative}; see SOURCES.md of the shared data)")
    return path


def _hub(dataset_id: str, name: str | None, split: str) -> list[dict]:
    from datasets import load_dataset

    try:
        return list(load_dataset(dataset_id, name, split=split))
    except Exception as exc:  # offline, gated, renamed: one message covers them all
        raise RtuneError(f"could not load '{dataset_id}' ({name or 'default'}, {split}) from the Hugging Face hub "
                         f"({type(exc).__name__}: {exc}); offline, pass --data-dir with local copies") from exc


def _gold(value, n_choices: int, where: str) -> int:
    try:
        gold = int(value)
    except (TypeError, ValueError):
        raise RtuneError(f"{where}: gold label {value!r} is not an integer") from None
    if not 0 <= gold < n_choices:
        raise RtuneError(f"{where}: gold label {gold} out of range for {n_choices} choices")
    return gold


# ---------------------------------------------------------------- ARC (easy, challenge)

def arc_text(question: str) -> str:
    """lm-eval `arc_easy`/`arc_challenge`: "Question: {question}\\nAnswer:", choices = choices.text.

    The llm-foundry copies store the query as "Question: {question}"; the prefix is taken off and the
    lm-eval string rebuilt, so both sources give identical prompts.
    """
    return f"Question: {question}\nAnswer:"


def _arc_loader(subset: str, local_name: str) -> Callable[[Path | None], list[MCItem]]:
    def load(data_dir: Path | None) -> list[MCItem]:
        task = f"arc_{subset}"
        items = []
        if data_dir is None:
            for index, row in enumerate(_hub("allenai/ai2_arc", f"ARC-{subset.capitalize()}", "test")):
                labels = list(row["choices"]["label"])
                items.append(MCItem(f"{task}/{index}", arc_text(row["question"]), tuple(row["choices"]["text"]),
                                    labels.index(row["answerKey"])))
            return items
        path = _local(data_dir, f"arc/{local_name}")
        for index, row in enumerate(read_jsonl(path)):
            where = f"{path}: row {index + 1}"
            _require(row, ("query", "choices", "gold"), where)
            question = row["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
            items.append(MCItem(f"{task}/{index}", arc_text(question), tuple(row["choices"]),
                                _gold(row["gold"], len(row["choices"]), where)))
        return items

    return load


# ---------------------------------------------------------------- OpenBookQA

def _openbookqa(data_dir: Path | None) -> list[MCItem]:
    """lm-eval `openbookqa` (main, test): the bare question_stem, choices = choices.text.

    The llm-foundry copy's `query` is the question stem itself.
    """
    items = []
    if data_dir is None:
        for index, row in enumerate(_hub("allenai/openbookqa", "main", "test")):
            labels = list(row["choices"]["label"])
            items.append(MCItem(f"openbookqa/{index}", row["question_stem"], tuple(row["choices"]["text"]),
                                labels.index(row["answerKey"].lstrip())))
        return items
    path = _local(data_dir, "openbookqa/openbook_qa.jsonl")
    for index, row in enumerate(read_jsonl(path)):
        where = f"{path}: row {index + 1}"
        _require(row, ("query", "choices", "gold"), where)
        items.append(MCItem(f"openbookqa/{index}", row["query"], tuple(row["choices"]),
                            _gold(row["gold"], len(row["choices"]), where)))
    return items


# ---------------------------------------------------------------- PIQA

def piqa_text(goal: str) -> str:
    """lm-eval `piqa` (validation): "Question: {goal}\\nAnswer:", choices = [sol1, sol2]."""
    return f"Question: {goal}\nAnswer:"


def _piqa(data_dir: Path | None) -> list[MCItem]:
    if data_dir is None:
        return [MCItem(f"piqa/{index}", piqa_text(row["goal"]), (row["sol1"], row["sol2"]), int(row["label"]))
                for index, row in enumerate(_hub("baber/piqa", None, "validation"))]
    path, labels_path = _local(data_dir, "piqa/valid.jsonl"), _local(data_dir, "piqa/valid-labels.lst")
    rows = read_jsonl(path)
    labels = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) != len(rows):
        raise RtuneError(f"{labels_path}: {len(labels)} labels for {len(rows)} questions in {path}")
    items = []
    for index, (row, label) in enumerate(zip(rows, labels)):
        where = f"{path}: row {index + 1}"
        _require(row, ("goal", "sol1", "sol2"), where)
        items.append(MCItem(f"piqa/{index}", piqa_text(row["goal"]), (row["sol1"], row["sol2"]), _gold(label, 2, f"{labels_path}:{index + 1}")))
    return items


# ---------------------------------------------------------------- HellaSwag

def hellaswag_preprocess(text: str) -> str:
    """lm-eval's clean-up of WikiHow artefacts: strip, " [title]" -> ". ", drop any [bracketed] text, one double space."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _capitalise_last_fragment(ctx: str) -> str:
    """Approximate lm-eval's `ctx_b.capitalize()` on a context whose ctx_a/ctx_b split was lost.

    ctx_b is the unfinished sentence at the end (ActivityNet: "he", "the lady"); its first letter
    is upper-cased. Unlike str.capitalize, the rest of the fragment keeps its case (lm-eval would
    lower-case it, which only matters for fragments holding capitals, e.g. names).
    """
    cut = max(ctx.rfind(". "), ctx.rfind("? "), ctx.rfind("! "))
    start = cut + 2 if cut >= 0 else 0
    return ctx[:start] + ctx[start:start + 1].upper() + ctx[start + 1:]


def hellaswag_text(activity_label: str, ctx: str) -> str:
    """lm-eval `hellaswag` (validation): preprocess("{activity_label}: {ctx_a} {ctx_b.capitalize()}").

    Choices are the preprocessed endings. The shared copy (klosax's text extraction) has ctx_a and
    ctx_b already joined and WikiHow markers removed; see `_capitalise_last_fragment` for the one
    approximation this forces. Rows from the hub (ctx_a, ctx_b) get lm-eval's exact string.
    """
    return hellaswag_preprocess(f"{activity_label}: {ctx}")


def _hellaswag(data_dir: Path | None) -> list[MCItem]:
    items = []
    if data_dir is None:
        for index, row in enumerate(_hub("Rowan/hellaswag", None, "validation")):
            ctx = f"{row['ctx_a']} {row['ctx_b'].capitalize()}"
            items.append(MCItem(f"hellaswag/{index}", hellaswag_text(row["activity_label"], ctx),
                                tuple(hellaswag_preprocess(e) for e in row["endings"]), int(row["label"])))
        return items
    path = _local(data_dir, "hellaswag/hellaswag_val.jsonl")
    for index, row in enumerate(read_jsonl(path)):
        where = f"{path}: row {index + 1}"
        _require(row, ("activity_label", "ctx", "endings", "label"), where)
        items.append(MCItem(f"hellaswag/{index}", hellaswag_text(row["activity_label"], _capitalise_last_fragment(row["ctx"])),
                            tuple(hellaswag_preprocess(e) for e in row["endings"]), _gold(row["label"], len(row["endings"]), where)))
    return items


# ---------------------------------------------------------------- MMLU

MMLU_LETTERS = ("A", "B", "C", "D")

# lm-eval's grouping of the 57 subjects (tasks/mmlu/default/mmlu_<subject>.yaml "group").
MMLU_CATEGORY: dict[str, str] = {
    **dict.fromkeys(("abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
                     "college_computer_science", "college_mathematics", "college_physics", "computer_security",
                     "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
                     "high_school_chemistry", "high_school_computer_science", "high_school_mathematics",
                     "high_school_physics", "high_school_statistics", "machine_learning"), "stem"),
    **dict.fromkeys(("business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
                     "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
                     "professional_accounting", "professional_medicine", "virology"), "other"),
    **dict.fromkeys(("econometrics", "high_school_geography", "high_school_government_and_politics",
                     "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
                     "human_sexuality", "professional_psychology", "public_relations", "security_studies",
                     "sociology", "us_foreign_policy"), "social_sciences"),
    **dict.fromkeys(("formal_logic", "high_school_european_history", "high_school_us_history",
                     "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
                     "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
                     "world_religions"), "humanities"),
}


def mmlu_text(question: str, choices: tuple[str, ...]) -> str:
    """lm-eval `mmlu_<subject>` (default): "{question.strip()}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer:".

    Choices are the letters "A".."D" (scored as " A".." D"); few-shot examples come first-n from the
    dev split, after the description `mmlu_description`.
    """
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(MMLU_LETTERS, choices))
    return f"{question.strip()}{options}\nAnswer:"


def mmlu_description(subject: str | None) -> str:
    return f"The following are multiple choice questions (with answers) about {(subject or '').replace('_', ' ')}.\n\n"


def _mmlu_item(index: int, subject: str, question: str, choices: tuple[str, ...], answer, where: str) -> MCItem:
    if len(choices) != 4:
        raise RtuneError(f"{where}: expected 4 choices, got {len(choices)}")
    return MCItem(f"mmlu_{subject}/{index}", mmlu_text(question, choices), MMLU_LETTERS, _gold(answer, 4, where), subject)


def _mmlu_split(split: str) -> Callable[[Path | None], list[MCItem]]:
    def load(data_dir: Path | None) -> list[MCItem]:
        items: list[MCItem] = []
        for subject in MMLU_CATEGORY:
            if data_dir is None:
                rows = _hub("cais/mmlu", subject, split)
                items += [_mmlu_item(i, subject, r["question"], tuple(r["choices"]), r["answer"], f"cais/mmlu {subject} row {i}")
                          for i, r in enumerate(rows)]
                continue
            path = _local(data_dir, f"mmlu/{split}/{subject}_{split}.csv")
            for index, row in enumerate(read_rows(path)):
                where = f"{path}: row {index + 1}"
                _require(row, ("question", "choice0", "choice1", "choice2", "choice3", "answer"), where)
                choices = tuple(row[f"choice{k}"] for k in range(4))
                items.append(_mmlu_item(index, subject, row["question"], choices, row["answer"], where))
        return items

    return load


# ---------------------------------------------------------------- GSM8K

def gsm8k_target(answer: str) -> str:
    """lm-eval's doc_to_target: the text after the last '####', stripped."""
    return answer.split("####")[-1].strip()


def load_gsm8k(data_dir: Path | None, split: str = "test") -> list[GSMItem]:
    if data_dir is None:
        rows, where = _hub("openai/gsm8k", "main", split), "openai/gsm8k"
    else:
        path = _local(data_dir, f"gsm8k/{split}.jsonl")
        rows, where = read_jsonl(path), str(path)
    items = []
    for index, row in enumerate(rows):
        _require(row, ("question", "answer"), f"{where}: row {index + 1}")
        items.append(GSMItem(f"gsm8k/{index}", row["question"], gsm8k_target(row["answer"])))
    return items


# ---------------------------------------------------------------- registry

MC_TASKS: dict[str, MCTask] = {
    "mmlu": MCTask("mmlu", _mmlu_split("test"), "cais/mmlu", "mmlu/test/<subject>_test.csv", metrics=("acc",),
                   version="1.0", load_fewshot=_mmlu_split("dev"), description=mmlu_description),
    "arc_easy": MCTask("arc_easy", _arc_loader("easy", "arc_easy.jsonl"), "allenai/ai2_arc:ARC-Easy", "arc/arc_easy.jsonl"),
    "arc_challenge": MCTask("arc_challenge", _arc_loader("challenge", "arc_challenge.jsonl"), "allenai/ai2_arc:ARC-Challenge",
                            "arc/arc_challenge.jsonl"),
    "hellaswag": MCTask("hellaswag", _hellaswag, "Rowan/hellaswag", "hellaswag/hellaswag_val.jsonl"),
    "openbookqa": MCTask("openbookqa", _openbookqa, "allenai/openbookqa:main", "openbookqa/openbook_qa.jsonl"),
    "piqa": MCTask("piqa", _piqa, "baber/piqa", "piqa/valid.jsonl + valid-labels.lst"),
}
GENERATIVE_TASKS = ("gsm8k",)
ALL_TASKS: tuple[str, ...] = (*MC_TASKS, *GENERATIVE_TASKS)

# Our task names as lm-eval calls them (for --engine lm-eval and for reading its results back).
LM_EVAL_NAMES: dict[str, str] = {name: name for name in MC_TASKS} | {"gsm8k": "gsm8k_cot_llama"}


def parse_tasks(spec: str) -> list[str]:
    """A comma-separated list of task names ("all" for every task), validated, order kept, no duplicates."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if names == ["all"]:
        return list(ALL_TASKS)
    unknown = [name for name in names if name not in ALL_TASKS]
    if unknown or not names:
        raise RtuneError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALL_TASKS)} or 'all'")
    return list(dict.fromkeys(names))
