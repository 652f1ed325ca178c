"""Stage kind `train`: one cell's IT or RT fine-tuning on its data stage's records (`rtune.training.train`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section, png, pyplot


class TrainStageResult(BaseModel):
    steps: int
    final_loss: float | None


def recipe_path(experiment) -> Path | None:
    """The training recipe: beside the experiment file, else a shipped config of that name."""
    from rtune.config import find_config

    name = experiment.training.config
    if name is None:
        return None
    beside = experiment.path(name)
    return beside if beside.is_file() else find_config(name)


def add_stage(builder, cell, data_key: str) -> str:
    from rtune.models import model_fingerprint
    from rtune.training.config import load_train_config

    experiment = builder.experiment
    spec = experiment.models[cell.model]
    config = load_train_config(
        recipe_path(experiment),
        {**experiment.training.overrides, "method": cell.method, "model": spec, "seed": cell.seed},
    )
    return builder.add(
        Stage(
            f"{cell.name}/train",
            "train",
            cell,
            {"settings": config.model_dump(exclude={"data"}), "model_fingerprint": model_fingerprint(spec)},
            run,
            (data_key,),
        )
    )


def run(ctx: Context) -> TrainStageResult:
    from rtune.training import train
    from rtune.training.config import TrainConfig

    config = TrainConfig.model_validate({**ctx.settings, "data": str(ctx.dirs[ctx.stage.deps[0]] / "records.jsonl")})
    result = train(config, ctx.work)
    return TrainStageResult(steps=result.steps, final_loss=result.final_loss)


def cell_cache(ctx: Context) -> Path:
    """One generation cache per cell, beside its stages: a stage whose settings changed reuses every answer
    it still asks for."""
    return ctx.work.parent / "generation_cache.sqlite"


def model_dir(ctx: Context) -> str:
    """The model a stage evaluates: a trained cell's merged folder, or the model spec itself."""
    source = ctx.stage.inputs["model"]
    return str(ctx.dirs[source["trained_by"]] / "merged") if "trained_by" in source else source["spec"]


def section(stages: list) -> Section | None:
    """Loss per logged step, and the share of EOS-ended answers at each epoch end where the run probed it."""
    from rtune.io import read_jsonl

    logs = {
        s.cell: read_jsonl(s.folder / "metrics.jsonl", tolerate_truncated_tail=True)
        for s in stages
        if (s.folder / "metrics.jsonl").exists()
    }
    logs = {cell: rows for cell, rows in logs.items() if any("loss" in row for row in rows)}
    if not logs:
        return None
    probes = {cell: [row for row in rows if "eos_rate" in row] for cell, rows in logs.items()}
    epochs = sorted({row["epoch"] for rows in probes.values() for row in rows})
    table = Section(
        "Training",
        "Loss per logged optimizer step (each run's metrics.jsonl)"
        + (
            "; EOS: share of answers to held-out instructions that ended with EOS at each epoch end." if epochs else "."
        ),
        ["Cell", "Steps", "First loss", "Last loss", *[f"EOS epoch {e:g}" for e in epochs]],
    )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for cell, rows in logs.items():
        losses = [row for row in rows if "loss" in row]
        ax.plot([row["step"] for row in losses], [row["loss"] for row in losses], label=cell)
        at = {row["epoch"]: f"{row['eos_rate']:.2f} ({row['eos_probe_n']})" for row in probes[cell]}
        table.rows.append(
            [
                cell,
                str(losses[-1]["step"]),
                f"{losses[0]['loss']:.3f}",
                f"{losses[-1]['loss']:.3f}",
                *[at.get(e, "–") for e in epochs],
            ]
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    table.figures.append(("Training loss", png(fig)))
    return table


KIND = register(Kind("train", TrainStageResult, run, section=section))
