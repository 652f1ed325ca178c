"""From an experiment to a plan: the cells, the model each cell evaluates, and the stages every kind adds.

The builder is what kinds see while planning: a cell's model source (an untrained model by its
fingerprint, or the train stage that makes it), the stage that answers an instruction set with a
cell's model (one per cell and set, shared by every evaluation that reads it), and the content
fingerprint of a named dataset or file (read once per plan).
"""

from __future__ import annotations

from pathlib import Path

from rtune.data import registry as datasets
from rtune.io import sha256_file
from rtune.pipeline import registry
from rtune.pipeline.experiment import Cell, Experiment, Selection, cells
from rtune.pipeline.kinds import data, generate, train
from rtune.pipeline.plan import Plan, Stage


class Builder:
    def __init__(self, experiment: Experiment, run_dir: Path):
        self.experiment = experiment
        self.plan = Plan(run_dir)
        self.cells = cells(experiment)
        self.data_dir = experiment.data_root()
        self._sources: dict[str, dict] = {}
        self._content: dict[str, str | dict] = {}

    def add(self, stage: Stage) -> str:
        return self.plan.add(stage)

    def chosen(self, selection: Selection) -> list[Cell]:
        return [cell for cell in self.cells if selection.applies(cell)]

    def content(self, name: str) -> str | dict:
        """What identifies a dataset's content: its files' sha256, or its hub id when only the hub has it."""
        if name not in self._content:
            path = self.experiment.file(name)
            self._content[name] = sha256_file(path) if path else datasets.content_fingerprint(name, self.data_dir)
        return self._content[name]

    def source(self, cell: Cell) -> dict:
        """How a cell's model is identified: an untrained spec by its fingerprint, a trained one by its train stage."""
        if cell.name not in self._sources:
            if cell.trained:
                self._sources[cell.name] = {"trained_by": train.add_stage(self, cell, data.add_stage(self, cell))}
            else:
                from rtune.models import model_fingerprint

                spec = self.experiment.models[cell.model]
                self._sources[cell.name] = {"spec": spec, "fingerprint": model_fingerprint(spec)}
        return self._sources[cell.name]

    def model_deps(self, cell: Cell) -> tuple[str, ...]:
        source = self.source(cell)
        return (source["trained_by"],) if "trained_by" in source else ()

    def generation(self, cell: Cell, instructions: str) -> str:
        """The key of the stage answering `instructions` with the cell's model, added on first request."""
        return generate.add_stage(self, cell, instructions)


def build_plan(experiment: Experiment, run_dir: Path) -> Plan:
    """Every evaluation kind adds its stages for the cells it applies to; data and train stages come with them."""
    builder = Builder(experiment, run_dir)
    for cell in builder.cells:  # trained cells get their data and train stages even when nothing evaluates them
        builder.source(cell)
    for name, kind in registry.evaluations().items():
        if name in experiment.evals:
            kind.plan(builder, experiment.evals[name])
    return builder.plan
