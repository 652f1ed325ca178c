"""`rtune demo`: the study in miniature on the embedded gemma-3-270m, on a laptop CPU, offline.

The demo is an ordinary experiment: `demo_experiment` writes the grid (base, IT and RT on
gemma-3-270m, trained on the packaged demo pairs) and the runner of `rtune run` executes it, two
stages at a time on two or more cores (IT and RT train side by side), so caching and resume are the
same: rerun the command after an interruption and it continues. URIAL is left to the study: its
long prompts would double the demo's time. Its
headline is the judge-free response rate on the packaged held-out instructions (does the model
answer, and stop?), next to the likelihood metric. With a data dir it adds a keyword refusal check
on XSTest and an ARC-Easy slice. The sizes follow the CPU study (docs/results/cpu-gemma270m.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Column, Table

from rtune.pipeline.experiment import Experiment
from rtune.pipeline.parallel import threads_per_job
from rtune.report.document import collect

MODEL = "gemma-3-270m"
RECIPE = "lora_cpu.yaml"


@dataclass(frozen=True)
class DemoSize:
    train_examples: int | None  # None: all 240 demo pairs
    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    max_new_tokens: int  # answer budget of the response-rate metric
    likelihood_items: int | None
    distractors: int
    response_tokens: int
    core_limit: int
    safety_limit: int


FULL = DemoSize(  # 12 minutes on 2 cores here: one epoch, small batches (more steps for the same tokens)
    train_examples=None,
    epochs=1,
    batch_size=4,
    learning_rate=1e-3,
    max_length=256,
    max_new_tokens=128,  # every demo answer is under 100 tokens
    likelihood_items=None,
    distractors=3,
    response_tokens=32,
    core_limit=40,
    safety_limit=16,
)
QUICK = DemoSize(
    train_examples=8,
    epochs=1,
    batch_size=4,
    learning_rate=5e-4,
    max_length=64,
    max_new_tokens=16,
    likelihood_items=6,
    distractors=3,
    response_tokens=12,
    core_limit=8,
    safety_limit=4,
)


def demo_experiment(quick: bool = False, data_dir: Path | None = None, model: str = MODEL) -> Experiment:
    size = QUICK if quick else FULL
    evals: dict = {
        "responses": {"instructions": "heldout", "limit": 2 if quick else None},
        "likelihood": {
            "records": "heldout",
            "limit": size.likelihood_items,
            "distractors": size.distractors,
            "max_response_tokens": size.response_tokens,
        },
    }
    if data_dir is not None:
        evals["safety"] = {"sets": ["xstest"], "judge": "keyword", "limit": size.safety_limit}
        evals["core"] = {"tasks": ["arc_easy"], "limit": size.core_limit}
    return Experiment.model_validate(
        {
            "name": "demo-quick" if quick else "demo",
            "data_dir": str(data_dir) if data_dir else None,
            "models": {"gemma": model},
            "datasets": {"demo": {"source": "demo", "max_examples": size.train_examples}},
            "methods": ["base", "it", "rt"],
            "training": {
                "config": RECIPE,
                "overrides": {
                    "epochs": size.epochs,
                    "batch_size": size.batch_size,
                    "learning_rate": size.learning_rate,
                    "max_length": size.max_length,
                    "save_steps": 8,
                },
            },
            "generation": {"max_new_tokens": size.max_new_tokens, "prompt": "tulu"},
            "evals": evals,
        }
    )


def result_tables(run_dir: Path) -> list[Table]:
    """The response rate (the headline) and the likelihood metric, per cell."""
    responses = Table(
        Column("cell", no_wrap=True),
        Column("answer [95% CI]", no_wrap=True),
        *[
            Column(name, no_wrap=True, justify="right")
            for name in ("echo", "leak", "loop", "runaway", "empty", "length")
        ],
        title="Response rate (% of outputs): answers that answer the instruction and stop (judge-free)",
        box=box.SIMPLE,
        collapse_padding=True,
        pad_edge=False,
    )
    likelihood = Table(
        Column("cell", no_wrap=True),
        Column("accuracy [95% CI]", no_wrap=True),
        "margin",
        "chance",
        title="Judge-free likelihood metric (%)",
        box=box.SIMPLE,
        collapse_padding=True,
        pad_edge=False,
    )
    for stage in collect(run_dir):
        r = stage.result
        if stage.kind == "responses" and r is not None:
            responses.add_row(
                stage.cell,
                _percent(r.answer_rate),
                *[
                    f"{100 * r.rates[label].value:.0f}"
                    for label in ("echo", "template_leak", "degenerate", "runaway", "empty")
                ],
                f"{r.mean_answer_length:.0f}" if r.mean_answer_length is not None else "–",
            )
        elif stage.kind == "likelihood" and r is not None:
            head = r.variants[r.headline]
            likelihood.add_row(
                stage.cell,
                _percent(head.accuracy),
                f"{head.margin.value:+.2f}",
                f"{100 * r.chance_accuracy:.1f}",
            )
    return [responses, likelihood]


def _percent(estimate) -> str:
    """An estimate with its interval in whole percent: the tables fit an 80-column terminal."""
    return f"{100 * estimate.value:.1f} [{100 * estimate.ci_low:.0f}, {100 * estimate.ci_high:.0f}]"


def run_demo(
    quick: bool = False, data_dir: Path | None = None, out: Path | None = None, console: Console | None = None
) -> Path:
    """Run (or resume) the demo; returns the run directory holding report.html and report.md."""
    from rtune.data.registry import resolve_data_dir
    from rtune.pipeline.runner import run_experiment

    console = console or Console(stderr=True)
    experiment = demo_experiment(quick, resolve_data_dir(data_dir))
    run_dir = Path(out) if out else Path("runs") / experiment.name
    run_experiment(experiment, run_dir, console=console, jobs=min(2, threads_per_job(1)))
    for table in result_tables(run_dir):
        console.print(table)
    return run_dir
