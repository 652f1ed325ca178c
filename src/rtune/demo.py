"""`rtune demo`: the study in miniature on the embedded gemma-3-270m, on a laptop CPU, offline.

The demo is an ordinary experiment: `demo_experiment` writes the grid (base, IT, RT and URIAL on
gemma-3-270m, trained on the packaged demo pairs, or on 64 LIMA examples when a data dir is
given) and the runner of `rtune run` executes it, so caching and resume are the same: rerun
the command after an interruption and it continues. Without a data dir it needs nothing but
the package: generation on held-out instructions and the judge-free likelihood metric. With one,
it adds the keyword refusal check on a few XSTest prompts and a small ARC-Easy slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rtune.experiment import Experiment
from rtune.report import collect

MODEL = "gemma-3-270m"
RECIPE = "lora_cpu.yaml"


@dataclass(frozen=True)
class DemoSize:
    train_examples: int | None  # None: all 114 demo pairs (64 LIMA examples with a data dir)
    max_steps: int
    max_length: int
    examples: int  # held-out instructions answered by every method
    max_new_tokens: int
    likelihood_items: int | None
    distractors: int
    response_tokens: int
    core_limit: int
    safety_limit: int


FULL = DemoSize(train_examples=None, max_steps=20, max_length=256, examples=4, max_new_tokens=80,
                likelihood_items=None, distractors=7, response_tokens=32, core_limit=40, safety_limit=16)
QUICK = DemoSize(train_examples=8, max_steps=2, max_length=64, examples=2, max_new_tokens=16,
                 likelihood_items=6, distractors=3, response_tokens=12, core_limit=8, safety_limit=4)


def demo_experiment(quick: bool = False, data_dir: Path | None = None, model: str = MODEL) -> Experiment:
    size = QUICK if quick else FULL
    if data_dir is not None:
        dataset = {"lima": {"source": "lima", "max_examples": size.train_examples or 64}}
    else:
        dataset = {"demo": {"source": "demo", "max_examples": size.train_examples}}
    evals: dict = {
        "examples": {"instructions": "heldout", "limit": size.examples},
        "likelihood": {"records": "heldout", "limit": size.likelihood_items, "distractors": size.distractors,
                       "max_response_tokens": size.response_tokens},
    }
    if data_dir is not None:
        evals["safety"] = {"sets": ["xstest"], "judge": "keyword", "limit": size.safety_limit}
        evals["core"] = {"tasks": ["arc_easy"], "limit": size.core_limit}
    return Experiment.model_validate({
        "name": "demo-quick" if quick else "demo",
        "data_dir": str(data_dir) if data_dir else None,
        "models": {"gemma": model},
        "datasets": dataset,
        "methods": ["base", "it", "rt", "urial"],
        "training": {"config": RECIPE, "overrides": {"max_steps": size.max_steps, "max_length": size.max_length,
                                                     "save_steps": 8}},
        "generation": {"max_new_tokens": size.max_new_tokens, "batch_size": 8},
        "evals": evals,
    })


def likelihood_table(run_dir: Path) -> Table:
    table = Table("cell", "accuracy", "margin", "chance", title="Judge-free likelihood metric")
    for stage in collect(run_dir):
        if stage.kind == "likelihood" and stage.result:
            head = stage.result["variants"][stage.result["headline"]]
            table.add_row(stage.cell, f"{head['accuracy']['value']:.3f} [{head['accuracy']['ci_low']:.3f}, {head['accuracy']['ci_high']:.3f}]",
                          f"{head['margin']['value']:+.2f}", f"{stage.result['chance_accuracy']:.3f}")
    return table


def run_demo(quick: bool = False, data_dir: Path | None = None, out: Path | None = None, console: Console | None = None) -> Path:
    """Run (or resume) the demo; returns the run directory holding report.html and report.md."""
    from rtune.data.sources import resolve_data_dir
    from rtune.runner import run_experiment

    console = console or Console(stderr=True)
    experiment = demo_experiment(quick, resolve_data_dir(data_dir))
    run_dir = Path(out) if out else Path("runs") / experiment.name
    run_experiment(experiment, run_dir, console=console)
    console.print(likelihood_table(run_dir))
    return run_dir
