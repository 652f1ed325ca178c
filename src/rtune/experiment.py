"""An experiment in one YAML file: models × datasets × methods × safety mixtures × seeds, and what to evaluate.

A *cell* is one model to evaluate: an untrained model and a prompting method (`base`, `urial`,
`urial_r`, `0shot`), or a model fine-tuned with `it` or `rt` on one dataset (optionally mixed with
N refusal examples) from one seed. Cell names are paths: `gemma/base`, `gemma/lima/rt/s0`,
`gemma/lima/it+safety100/s0`; `rtune run --only` takes a name or a glob over them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rtune.config import describe_validation_error, find_config, read_yaml_mapping
from rtune.errors import RtuneError
from rtune.generation.hf import DEFAULT_BATCH_SIZE

TRAINED = ("it", "rt")
PROMPTED = ("base", "urial", "urial_r", "0shot")
Method = Literal["base", "it", "rt", "urial", "urial_r", "0shot"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dataset(_Strict):
    source: str  # a named source (lima, alpaca, dolly, …), a record file, hf:<id>, or `demo` (packaged)
    max_examples: int | None = Field(None, ge=1)
    seed: int = 0  # subsampling seed
    safety_mixtures: list[int] = [0]  # refusal examples appended (the paper: 0, 100, 200, 500)


class Training(_Strict):
    config: str | None = None  # a recipe YAML: a path (relative to the experiment file) or a shipped name (lora_cpu.yaml)
    overrides: dict = {}  # any TrainConfig field


class Generation(_Strict):
    backend: Literal["hf", "vllm"] = "hf"
    max_new_tokens: int = Field(2048, ge=1)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)


class _Selection(_Strict):
    """Which cells an evaluation runs on: by method, and optionally by cell-name globs."""

    methods: list[Method] | None = None  # None: every method
    cells: list[str] | None = None  # globs over cell names, e.g. ["*/lima/*"]; None: every cell

    def applies(self, cell: "Cell") -> bool:
        return (self.methods is None or cell.method in self.methods) and \
            (self.cells is None or any(fnmatch.fnmatch(cell.name, pattern) for pattern in self.cells))


class InstructionSet(_Selection):
    """What the models answer: `heldout` (the packaged demo set), alpaca_eval, just_eval, or a file."""

    instructions: str = "heldout"
    limit: int | None = Field(None, ge=1)


class PairwiseEval(InstructionSet):
    judge: str
    reference: str = "it"  # a method (same model, dataset, mixture, seed) or a full cell name
    methods: list[Method] | None = ["rt"]
    mode: Literal["weighted", "parsed"] = "weighted"


class AspectsEval(InstructionSet):
    judge: str


class LikelihoodEval(_Selection):
    records: str = "heldout"  # `heldout` or a record JSONL
    limit: int | None = Field(None, ge=2)  # the first N records
    distractors: int | None = Field(None, ge=1)
    max_response_tokens: int | None = Field(48, ge=1)  # None: whole responses
    headline: Literal["total", "per_token", "pmi"] = "total"
    methods: list[Method] | None = ["base", "it", "rt"]  # the metric conditions on the inference template


class CoreEval(_Selection):
    tasks: list[str]
    limit: int | None = Field(None, ge=1)
    num_fewshot: int | None = None
    methods: list[Method] | None = ["base", "it", "rt"]


class SafetyEval(_Selection):
    sets: list[str] = ["advbench", "harmbench", "malicious_instruct", "xstest"]
    judge: str = "keyword"  # or an LLM judge spec, e.g. openai:MODEL@URL
    limit: int | None = Field(None, ge=1)  # prompts per set
    max_new_tokens: int | None = None  # default: generation.max_new_tokens


class Evals(_Strict):
    examples: InstructionSet | None = None  # outputs shown side by side in the report, no judge
    pairwise: PairwiseEval | None = None
    aspects: AspectsEval | None = None
    likelihood: LikelihoodEval | None = None
    core: CoreEval | None = None
    safety: SafetyEval | None = None


class Experiment(_Strict):
    name: str
    output_dir: str | None = None  # default runs/<name>, relative to the working directory
    data_dir: str | None = None  # local datasets (default: $RTUNE_DATA_DIR, else the hub)
    models: dict[str, str]  # short name -> model spec
    datasets: dict[str, Dataset] = {}
    methods: list[Method]
    seeds: list[int] = [0]
    safety_source: str = "safety-tuned-llamas"
    training: Training = Training()
    generation: Generation = Generation()
    evals: Evals = Evals()
    base_dir: str = Field("", exclude=True)  # folder of the YAML file: relative paths start there

    @model_validator(mode="after")
    def _check(self) -> "Experiment":
        if any(m in TRAINED for m in self.methods) and not self.datasets:
            raise ValueError("methods it/rt need at least one entry under `datasets`")
        for name in [*self.models, *self.datasets]:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"name '{name}' must be non-empty, without '/' and not start with '.'")
        return self

    def path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else Path(self.base_dir or ".") / path


@dataclass(frozen=True)
class Cell:
    name: str
    model: str  # key into Experiment.models
    method: str
    dataset: str | None = None
    safety: int = 0
    seed: int | None = None

    @property
    def trained(self) -> bool:
        return self.method in TRAINED

    def sibling(self, method: str) -> str:
        """The name of the cell that differs from this one only in its method."""
        return cell_name(self.model, method, self.dataset, self.safety, self.seed)


def cell_name(model: str, method: str, dataset: str | None = None, safety: int = 0, seed: int | None = None) -> str:
    if method not in TRAINED:
        return f"{model}/{method}"
    return f"{model}/{dataset}/{method}{f'+safety{safety}' if safety else ''}/s{seed}"


def cells(experiment: Experiment) -> list[Cell]:
    found = []
    for model in experiment.models:
        for method in experiment.methods:
            if method not in TRAINED:
                found.append(Cell(cell_name(model, method), model, method))
                continue
            for dataset, entry in experiment.datasets.items():
                for safety in entry.safety_mixtures:
                    for seed in experiment.seeds:
                        found.append(Cell(cell_name(model, method, dataset, safety, seed), model, method, dataset, safety, seed))
    return found


def load_experiment(path: str | Path) -> Experiment:
    """An experiment YAML by path, or a shipped one by name (`cpu_gemma270m`, `paper_llama31_8b`)."""
    path = find_config(path, "experiments")
    data = read_yaml_mapping(path, "a mapping (name, models, methods, …)")
    try:
        return Experiment.model_validate({**data, "base_dir": str(path.parent)})
    except ValidationError as exc:
        raise RtuneError(f"{path}: {describe_validation_error(exc, 'experiment')}") from exc
