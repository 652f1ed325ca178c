"""Stage kind `core`: MMLU, ARC, HellaSwag, OpenBookQA, PIQA and GSM8K per cell (`rtune.evals.core`).

Core retention is a property of the weights, not of a prompting method, so by default it runs on
base, IT and RT cells only (URIAL cells would score the base model again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rtune.evals.core import CoreEvalSettings, CoreReport
from rtune.pipeline.experiment import Method, Selection
from rtune.pipeline.kinds.train import model_dir
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section, bars, ci_text


class CoreSpec(Selection):
    tasks: list[str]
    limit: int | None = Field(None, ge=1)  # items per task (per MMLU subject)
    limits: dict[str, int] = {}  # per-task limits replacing `limit`, e.g. {mmlu: 10}
    num_fewshot: int | None = None
    protocol: Literal["paper", "lm-eval"] = "paper"  # see rtune.evals.core.prompts
    methods: list[Method] | None = ["base", "it", "rt"]


def plan(builder, spec: CoreSpec) -> None:
    content = {task: builder.content(task) for task in spec.tasks}
    for cell in builder.chosen(spec):
        builder.add(
            Stage(
                f"{cell.name}/core",
                "core",
                cell,
                {
                    "model": builder.source(cell),
                    "settings": spec.model_dump(exclude={"methods", "cells"}),
                    "content": content,
                },
                run,
                builder.model_deps(cell),
            )
        )


def run(ctx: Context) -> CoreReport:
    from rtune.evals.core import run as evaluate
    from rtune.progress import Bar

    s = ctx.settings
    settings = CoreEvalSettings(
        model=model_dir(ctx),
        out=ctx.work / "core.json",
        tasks=tuple(s["tasks"]),
        limit=s["limit"],
        limits=s["limits"],
        num_fewshot=s["num_fewshot"],
        protocol=s["protocol"],
        data_dir=ctx.env.data_root(),
    )
    with Bar(ctx.console) as bar:
        report = evaluate(settings, bar)
    return report.model_copy(update={"document": Path(report.document.name), "samples": Path(report.samples.name)})


def _headline(scores) -> tuple[object, str] | None:
    """The paper's number (acc; GSM8K strict exact match) and, beside it, acc_norm where there is one."""
    metric = scores.acc or scores.exact_match
    if metric is None:
        return None
    return metric, f" (acc_norm {scores.acc_norm.value:.3f})" if scores.acc and scores.acc_norm else ""


def section(stages: list) -> Section:
    tasks = list(dict.fromkeys(name for stage in stages for name in stage.result.headline))
    table = Section(
        "Core capabilities",
        "Accuracy per task as the paper reports it (lm-eval's acc, acc_norm beside "
        "it; GSM8K strict exact match; ai2_arc: ARC-Easy and ARC-Challenge as one set), "
        "± 1.96 standard errors.",
        ["Cell", *tasks],
    )
    series: dict[str, list] = {task: [] for task in tasks}
    for stage in stages:
        row = [stage.cell]
        for task in tasks:
            scores = stage.result.results.get(task)
            found = _headline(scores) if scores else None
            if found is None:
                row.append("–")
                series[task].append((0.0, 0.0, 0.0))
                continue
            value, beside = found
            half = 1.96 * (value.stderr or 0)
            row.append(ci_text(value.value, value.value - half, value.value + half) + beside)
            series[task].append((value.value, value.value - half, value.value + half))
        table.rows.append(row)
    table.figures.append(("Core task accuracy", bars([s.cell for s in stages], series, "accuracy")))
    return table


KIND = register(Kind("core", CoreReport, run, CoreSpec, plan, section))
