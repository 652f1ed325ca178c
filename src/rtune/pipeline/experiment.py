"""An experiment in one YAML file: models × datasets × methods × safety mixtures × seeds, and what to evaluate.

A *cell* is one model to evaluate: an untrained model and a prompting method (`base`, `urial`,
`urial_r`, `0shot`), or a model fine-tuned with `it` or `rt` on one dataset (optionally mixed with
N refusal examples) from one seed. Cell names are paths: `gemma/base`, `gemma/lima/rt/s0`,
`gemma/lima/it+safety100/s0`; `rtune run --only` takes a name or a glob over them. Each section
under `evals:` belongs to a registered stage kind (`rtune.pipeline.registry`), which validates it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rtune.config import describe_validation_error, find_config, read_yaml_mapping
from rtune.data import registry as datasets
from rtune.data.refine import PAPER_MAX_NEW_TOKENS
from rtune.errors import RtuneError
from rtune.generation.hf import DEFAULT_BATCH_SIZE
from rtune.generation.openai_compat import RetrySettings
from rtune.pipeline import registry

TRAINED = ("it", "rt")
DATA_SUFFIXES = {".jsonl", ".json", ".csv"}
Method = Literal["base", "it", "rt", "urial", "urial_r", "0shot"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Refine(Strict):
    """Train on refined responses (rtune.data.refine); a mixture's refusal examples are added after, unrefined."""

    refiner: str  # a generator spec: hf:MODEL, vllm:MODEL, openai:MODEL@URL
    prompt_file: str | None = None  # the paper's syntax ({user_request}, {response}), relative to the experiment or
    #                                 data:PATH; default: rtune's own prompt
    max_new_tokens: int = Field(PAPER_MAX_NEW_TOKENS, ge=1)


class Dataset(Strict):
    source: str  # a named source (lima, alpaca, dolly, …), a record file, hf:<id>, or `demo` (packaged)
    max_examples: int | None = Field(None, ge=1)
    seed: int = 0  # subsampling seed
    safety_mixtures: list[int] = [0]  # refusal examples appended (the paper: 0, 100, 200, 500)
    refine: Refine | None = None


class Training(Strict):
    config: str | None = (
        None  # a recipe YAML: a path (relative to the experiment file) or a shipped name (lora_cpu.yaml)
    )
    overrides: dict = {}  # any TrainConfig field


class Generation(Strict):
    backend: Literal["hf", "vllm"] = "hf"
    max_new_tokens: int = Field(2048, ge=1)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)  # not part of any cache key: fp32 answers do not depend on it
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 answers depend on the batch size (see rtune.generation.hf)
    prompt: str = "chat"  # base/it/rt cells: chat (the model's template, Tulu's when it has none), tulu or plain
    urial_prompts: dict[
        str, str
    ] = {}  # urial/urial_r/0shot -> a prompt file (relative to the experiment, or `data:` + a path
    #                                     under the data dir); a method not named uses rtune's own prompt


class Selection(Strict):
    """Which cells an evaluation runs on: by method, and optionally by cell-name globs."""

    methods: list[Method] | None = None  # None: every method
    cells: list[str] | None = None  # globs over cell names, e.g. ["*/lima/*"]; None: every cell

    def applies(self, cell: Cell) -> bool:
        return (self.methods is None or cell.method in self.methods) and (
            self.cells is None or any(fnmatch.fnmatch(cell.name, pattern) for pattern in self.cells)
        )


class Experiment(Strict):
    name: str
    output_dir: str | None = None  # default runs/<name>, relative to the working directory
    data_dir: str | None = None  # local datasets (default: $RTUNE_DATA_DIR, else the hub)
    plugins: list[str] = []  # modules (dotted names or .py files) that register more stage kinds
    models: dict[str, str]  # short name -> model spec
    datasets: dict[str, Dataset] = {}
    methods: list[Method]
    seeds: list[int] = [0]
    safety_source: str = "safety-tuned-llamas"
    training: Training = Training()
    generation: Generation = Generation()
    server: RetrySettings = RetrySettings()  # judge and refiner servers: timeout, max_retries (not in any stage hash)
    evals: dict[str, Any] = {}  # kind name -> that kind's section (validated by the kind)
    base_dir: str = Field("", exclude=True)  # folder of the YAML file: relative paths start there

    @model_validator(mode="before")
    @classmethod
    def _load_plugins(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for plugin in data.get("plugins") or []:
                registry.load_plugin(str(plugin), Path(data.get("base_dir") or "."))
        return data

    @field_validator("evals")
    @classmethod
    def _known_evals(cls, evals: dict[str, Any]) -> dict[str, Any]:
        known = registry.evaluations()
        unknown = [name for name in evals if name not in known]
        if unknown:
            raise ValueError(f"unknown evaluation '{unknown[0]}'; known: {', '.join(known)} (or add a plugin)")
        return {name: known[name].spec.model_validate(value or {}) for name, value in evals.items()}

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        if any(m in TRAINED for m in self.methods) and not self.datasets:
            raise ValueError("methods it/rt need at least one entry under `datasets`")
        for name in [*self.models, *self.datasets]:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"name '{name}' must be non-empty, without '/' and not start with '.'")
        return self

    def path(self, value: str) -> Path:
        """A path the experiment names: `data:` + a path under the data dir, else relative to the experiment."""
        if value.startswith("data:"):
            root = self.data_root()
            if root is None:
                raise RtuneError(f"'{value}' is under the data dir: set data_dir, --data-dir or RTUNE_DATA_DIR")
            return root / value.removeprefix("data:")
        path = Path(value).expanduser()
        return path if path.is_absolute() else Path(self.base_dir or ".") / path

    def data_root(self) -> Path | None:
        return datasets.resolve_data_dir(self.path(self.data_dir) if self.data_dir else None)

    def file(self, name: str) -> Path | None:
        """A data file the experiment names: a packaged set, or a path relative to the experiment file.

        None for a dataset registered by name (read from the data dir or the hub by its own loader).
        """
        if name in datasets.DATASETS:
            return datasets.local_file(name, None) if datasets.get(name).packaged else None
        path = self.path(name)
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise RtuneError(
                f"'{name}' is neither a known dataset ({', '.join(datasets.DATASETS)}) nor a .jsonl/.json/.csv file"
            )
        if not path.is_file():
            raise RtuneError(f"{path}: no such data file (named in experiment '{self.name}')")
        return path

    def prompt_file(self, value: str) -> str:
        """A prompt file named in the experiment (`data:` + a path under the data dir, else relative to it)."""
        return str(self.path(value))


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
                        found.append(
                            Cell(cell_name(model, method, dataset, safety, seed), model, method, dataset, safety, seed)
                        )
    return found


def load_experiment(
    path: str | Path, data_dir: str | Path | None = None, timeout: float | None = None, max_retries: int | None = None
) -> Experiment:
    """An experiment YAML by path, or a shipped one by name (`cpu_gemma270m`); `data_dir` overrides its `data_dir`,
    `timeout` and `max_retries` its `server` section (the command line wins over the file)."""
    path = find_config(path, "experiments")
    data = read_yaml_mapping(path, "a mapping (name, models, methods, …)")
    if data_dir is not None:
        data["data_dir"] = str(Path(data_dir).resolve())
    given = {name: value for name, value in (("timeout", timeout), ("max_retries", max_retries)) if value is not None}
    if given:
        section = data.get("server") or {}
        data["server"] = {**section, **given} if isinstance(section, dict) else section  # a bad section stays an error
    try:
        return Experiment.model_validate({**data, "base_dir": str(path.parent)})
    except ValidationError as exc:
        raise RtuneError(f"{path}: {describe_validation_error(exc, 'experiment')}") from exc
