"""Stage kind `responses`: the judge-free response rate of a cell's answers (`rtune.evals.responses`)."""

from __future__ import annotations

from rtune.evals.responses import LABELS, ResponsesResult, ResponsesSettings
from rtune.pipeline.kinds.generate import InstructionSet
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section, bars, ci_text


class ResponsesSpec(InstructionSet):
    """The `responses:` section: which instruction set (and how many) every chosen cell answers."""


def rules() -> str:
    """The classifier's identity: a change to its rules or thresholds relabels every cell (a cheap stage)."""
    import inspect

    import rtune.evals.responses
    from rtune.io import stable_hash

    return stable_hash(inspect.getsource(rtune.evals.responses))[:16]


def plan(builder, spec: ResponsesSpec) -> None:
    for cell in builder.chosen(spec):
        builder.add(
            Stage(
                f"{cell.name}/responses",
                "responses",
                cell,
                {"settings": {"limit": spec.limit}, "rules": rules()},
                run,
                (builder.generation(cell, spec.instructions),),
            )
        )


def run(ctx: Context) -> ResponsesResult:
    from rtune.evals.responses import run as classify
    from rtune.io import atomic_write_json, read_json

    outputs = read_json(ctx.dirs[ctx.stage.deps[0]] / "outputs.json")[: ctx.settings["limit"]]
    atomic_write_json(
        ctx.work / "outputs.json", outputs
    )  # the answers this stage labelled (a shared set may be longer)
    result = classify(ResponsesSettings(outputs=ctx.work / "outputs.json"))
    # named inside the stage folder: the work folder is renamed into place once the stage is done
    result = result.model_copy(update={"outputs": "outputs.json"})
    atomic_write_json(ctx.work / "labels.json", result.model_dump(mode="json"))
    return result


def section(stages: list) -> Section:
    first = stages[0].result
    failures = [label for label in LABELS if label != "answer"]
    table = Section(
        "Response rate (judge-free)",
        "Share of answers that answer: non-empty, ended with EOS within the token budget, no template marker, not "
        "opening by restating the instruction, no loop. Failure shares beside it; 95% bootstrap CIs over items. "
        f"Length: mean {first.length_unit} per answer.",
        ["Cell", "Answer rate", *failures, "Length", "n"],
    )
    for stage in stages:
        r = stage.result
        table.rows.append(
            [
                stage.cell,
                ci_text(r.answer_rate.value, r.answer_rate.ci_low, r.answer_rate.ci_high),
                *[f"{r.rates[label].value:.3f}" for label in failures],
                f"{r.mean_answer_length:.0f}" if r.mean_answer_length is not None else "–",
                str(r.n),
            ]
        )
    series = {
        "answer rate": [
            (s.result.answer_rate.value, s.result.answer_rate.ci_low, s.result.answer_rate.ci_high) for s in stages
        ]
    }
    table.figures.append(("Answer rate", bars([s.cell for s in stages], series, "share of answers")))
    return table


KIND = register(Kind("responses", ResponsesResult, run, ResponsesSpec, plan, section))
