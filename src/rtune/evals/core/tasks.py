"""The core benchmarks as data: how lm-eval turns one row of each set into a prompt.

Every multiple-choice set, whatever its file format (llm-foundry ICL JSONL, the PIQA release, CSV,
the Hugging Face hub), is normalised to one `MCItem`: the question text exactly as lm-eval's
`doc_to_text` renders it, the answer choices as lm-eval's `doc_to_choice` gives them (without the
target delimiter), and the gold index. Where each set lives, locally or on the hub (the datasets
lm-eval itself uses), is `rtune.data.registry`'s to say.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rtune.data import registry
from rtune.data.hub import load_rows
from rtune.errors import RtuneError
from rtune.io import read_jsonl, read_rows


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
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    version: str = "1.0"
    load_fewshot: Callable[[Path | None], list[MCItem]] | None = None  # few-shot pool, first-n order
    description: Callable[[str | None], str] = field(default=lambda subject: "")


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in row]
    if missing:
        raise RtuneError(f"{where}: missing field(s) {', '.join(missing)}; expected {', '.join(keys)}")


def _hub_rows(name: str) -> list[dict]:
    """Rows of a registered dataset's hub copy."""
    source = registry.hub_source(name)
    return load_rows(source.id, source.config, source.split)


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


def _arc_loader(task: str) -> Callable[[Path | None], list[MCItem]]:
    def load(data_dir: Path | None) -> list[MCItem]:
        items = []
        if data_dir is None:
            for index, row in enumerate(_hub_rows(task)):
                labels = list(row["choices"]["label"])
                items.append(
                    MCItem(
                        f"{task}/{index}",
                        arc_text(row["question"]),
                        tuple(row["choices"]["text"]),
                        labels.index(row["answerKey"]),
                    )
                )
            return items
        path = registry.local_file(task, data_dir)
        for index, row in enumerate(read_jsonl(path)):
            where = f"{path}: row {index + 1}"
            _require(row, ("query", "choices", "gold"), where)
            question = row["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
            items.append(
                MCItem(
                    f"{task}/{index}",
                    arc_text(question),
                    tuple(row["choices"]),
                    _gold(row["gold"], len(row["choices"]), where),
                )
            )
        return items

    return load


# ---------------------------------------------------------------- OpenBookQA


def _openbookqa(data_dir: Path | None) -> list[MCItem]:
    """lm-eval `openbookqa` (main, test): the bare question_stem, choices = choices.text.

    The llm-foundry copy's `query` is the question stem itself.
    """
    items = []
    if data_dir is None:
        for index, row in enumerate(_hub_rows("openbookqa")):
            labels = list(row["choices"]["label"])
            items.append(
                MCItem(
                    f"openbookqa/{index}",
                    row["question_stem"],
                    tuple(row["choices"]["text"]),
                    labels.index(row["answerKey"].lstrip()),
                )
            )
        return items
    path = registry.local_file("openbookqa", data_dir)
    for index, row in enumerate(read_jsonl(path)):
        where = f"{path}: row {index + 1}"
        _require(row, ("query", "choices", "gold"), where)
        items.append(
            MCItem(
                f"openbookqa/{index}",
                row["query"],
                tuple(row["choices"]),
                _gold(row["gold"], len(row["choices"]), where),
            )
        )
    return items


# ---------------------------------------------------------------- PIQA


def piqa_text(goal: str) -> str:
    """lm-eval `piqa` (validation): "Question: {goal}\\nAnswer:", choices = [sol1, sol2]."""
    return f"Question: {goal}\nAnswer:"


def _piqa(data_dir: Path | None) -> list[MCItem]:
    if data_dir is None:
        return [
            MCItem(f"piqa/{index}", piqa_text(row["goal"]), (row["sol1"], row["sol2"]), int(row["label"]))
            for index, row in enumerate(_hub_rows("piqa"))
        ]
    path, labels_path = registry.local_files("piqa", data_dir)
    rows = read_jsonl(path)
    labels = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) != len(rows):
        raise RtuneError(f"{labels_path}: {len(labels)} labels for {len(rows)} questions in {path}")
    items = []
    for index, (row, label) in enumerate(zip(rows, labels, strict=True)):
        where = f"{path}: row {index + 1}"
        _require(row, ("goal", "sol1", "sol2"), where)
        items.append(
            MCItem(
                f"piqa/{index}",
                piqa_text(row["goal"]),
                (row["sol1"], row["sol2"]),
                _gold(label, 2, f"{labels_path}:{index + 1}"),
            )
        )
    return items


# ---------------------------------------------------------------- HellaSwag


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's clean-up of WikiHow artefacts: strip, " [title]" -> ". ", drop [bracketed] text, one double space."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_split(ctx: str) -> tuple[str, str]:
    """(ctx_a, ctx_b) of a context whose split was lost: ctx_b is the unfinished sentence at the end.

    ActivityNet's ctx_b is that fragment ("he", "the lady"); WikiHow's is usually empty, and then the
    last sentence is taken for it, which only matters where that sentence holds capitals (52 of 10,042).
    """
    cut = max(ctx.rfind(". "), ctx.rfind("? "), ctx.rfind("! "))
    return (ctx[: cut + 1], ctx[cut + 2 :]) if cut >= 0 else ("", ctx)


def _capitalise_last_fragment(ctx: str) -> str:
    """Approximate lm-eval's `ctx_b.capitalize()` on a context whose ctx_a/ctx_b split was lost.

    The first letter of the guessed ctx_b (`hellaswag_split`) is upper-cased. Unlike str.capitalize,
    the rest of the fragment keeps its case (lm-eval would lower-case it, which only matters for
    fragments holding capitals, e.g. names).
    """
    ctx_a, ctx_b = hellaswag_split(ctx)
    return ctx_a + (" " if ctx_a else "") + ctx_b[:1].upper() + ctx_b[1:]


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
        for index, row in enumerate(_hub_rows("hellaswag")):
            ctx = f"{row['ctx_a']} {row['ctx_b'].capitalize()}"
            items.append(
                MCItem(
                    f"hellaswag/{index}",
                    hellaswag_text(row["activity_label"], ctx),
                    tuple(hellaswag_preprocess(e) for e in row["endings"]),
                    int(row["label"]),
                )
            )
        return items
    path = registry.local_file("hellaswag", data_dir)
    for index, row in enumerate(read_jsonl(path)):
        where = f"{path}: row {index + 1}"
        _require(row, ("activity_label", "ctx", "endings", "label"), where)
        text = hellaswag_text(row["activity_label"], _capitalise_last_fragment(row["ctx"]))
        items.append(
            MCItem(
                f"hellaswag/{index}",
                text,
                tuple(hellaswag_preprocess(e) for e in row["endings"]),
                _gold(row["label"], len(row["endings"]), where),
            )
        )
    return items


# ---------------------------------------------------------------- MMLU

MMLU_LETTERS = ("A", "B", "C", "D")

# lm-eval's grouping of the 57 subjects (tasks/mmlu/default/mmlu_<subject>.yaml "group").
MMLU_CATEGORY: dict[str, str] = {
    **dict.fromkeys(
        (
            "abstract_algebra",
            "anatomy",
            "astronomy",
            "college_biology",
            "college_chemistry",
            "college_computer_science",
            "college_mathematics",
            "college_physics",
            "computer_security",
            "conceptual_physics",
            "electrical_engineering",
            "elementary_mathematics",
            "high_school_biology",
            "high_school_chemistry",
            "high_school_computer_science",
            "high_school_mathematics",
            "high_school_physics",
            "high_school_statistics",
            "machine_learning",
        ),
        "stem",
    ),
    **dict.fromkeys(
        (
            "business_ethics",
            "clinical_knowledge",
            "college_medicine",
            "global_facts",
            "human_aging",
            "management",
            "marketing",
            "medical_genetics",
            "miscellaneous",
            "nutrition",
            "professional_accounting",
            "professional_medicine",
            "virology",
        ),
        "other",
    ),
    **dict.fromkeys(
        (
            "econometrics",
            "high_school_geography",
            "high_school_government_and_politics",
            "high_school_macroeconomics",
            "high_school_microeconomics",
            "high_school_psychology",
            "human_sexuality",
            "professional_psychology",
            "public_relations",
            "security_studies",
            "sociology",
            "us_foreign_policy",
        ),
        "social_sciences",
    ),
    **dict.fromkeys(
        (
            "formal_logic",
            "high_school_european_history",
            "high_school_us_history",
            "high_school_world_history",
            "international_law",
            "jurisprudence",
            "logical_fallacies",
            "moral_disputes",
            "moral_scenarios",
            "philosophy",
            "prehistory",
            "professional_law",
            "world_religions",
        ),
        "humanities",
    ),
}


def mmlu_text(question: str, choices: tuple[str, ...]) -> str:
    """lm-eval `mmlu_<subject>` (default): "{question.strip()}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer:".

    Choices are the letters "A".."D" (scored as " A".." D"); few-shot examples come first-n from the
    dev split, after the description `mmlu_description`.
    """
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(MMLU_LETTERS, choices, strict=True))
    return f"{question.strip()}{options}\nAnswer:"


def mmlu_description(subject: str | None) -> str:
    return f"The following are multiple choice questions (with answers) about {(subject or '').replace('_', ' ')}.\n\n"


def _mmlu_item(index: int, subject: str, question: str, choices: tuple[str, ...], answer, where: str) -> MCItem:
    if len(choices) != 4:
        raise RtuneError(f"{where}: expected 4 choices, got {len(choices)}")
    return MCItem(
        f"mmlu_{subject}/{index}", mmlu_text(question, choices), MMLU_LETTERS, _gold(answer, 4, where), subject
    )


def _mmlu_split(split: str) -> Callable[[Path | None], list[MCItem]]:
    """Loader of MMLU's `split` ("test", or "dev" for the few-shot pool), subjects in lm-eval's order.

    The hub copy is read one subject (config) at a time, as lm-eval does; locally each subject is
    `<subject>_<split>.csv` among the files the registry lists.
    """

    def load(data_dir: Path | None) -> list[MCItem]:
        if data_dir is None:
            dataset_id = registry.hub_source("mmlu").id
            return [
                _mmlu_item(
                    i, subject, r["question"], tuple(r["choices"]), r["answer"], f"{dataset_id} {subject} row {i}"
                )
                for subject in MMLU_CATEGORY
                for i, r in enumerate(load_rows(dataset_id, subject, split))
            ]
        files = {path.name: path for path in registry.local_files("mmlu", data_dir)}
        items: list[MCItem] = []
        for subject in MMLU_CATEGORY:
            path = files.get(f"{subject}_{split}.csv")
            if path is None:
                raise RtuneError(f"dataset 'mmlu': {subject}_{split}.csv not found under {data_dir}")
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


def load_gsm8k(data_dir: Path | None) -> list[GSMItem]:
    """The GSM8K test problems."""
    if data_dir is None:
        rows, where = _hub_rows("gsm8k"), registry.hub_source("gsm8k").id
    else:
        path = registry.local_file("gsm8k", data_dir)
        rows, where = read_jsonl(path), str(path)
    items = []
    for index, row in enumerate(rows):
        _require(row, ("question", "answer"), f"{where}: row {index + 1}")
        items.append(GSMItem(f"gsm8k/{index}", row["question"], gsm8k_target(row["answer"])))
    return items


# ---------------------------------------------------------------- registry

MC_TASKS: dict[str, MCTask] = {
    "mmlu": MCTask(
        "mmlu",
        _mmlu_split("test"),
        metrics=("acc",),
        version="1.0",
        load_fewshot=_mmlu_split("dev"),
        description=mmlu_description,
    ),
    "arc_easy": MCTask("arc_easy", _arc_loader("arc_easy")),
    "arc_challenge": MCTask("arc_challenge", _arc_loader("arc_challenge")),
    "hellaswag": MCTask("hellaswag", _hellaswag),
    "openbookqa": MCTask("openbookqa", _openbookqa),
    "piqa": MCTask("piqa", _piqa),
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
        raise RtuneError(
            f"unknown task(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALL_TASKS)} or 'all'"
        )
    return list(dict.fromkeys(names))
