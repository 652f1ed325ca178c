"""Stage kind `likelihood`: the judge-free instructability metric per cell (`rtune.evals.instructability`)."""

from __future__ import annotations

from pydantic import Field

from rtune.evals.instructability import LikelihoodResult, LikelihoodRun, LikelihoodSettings
from rtune.pipeline.experiment import Method, Selection
from rtune.pipeline.kinds.generate import prompt_for
from rtune.pipeline.kinds.train import model_dir
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.prompting import parse_format
from rtune.report.figures import Section, bars, ci_text


class LikelihoodSpec(Selection, LikelihoodSettings):
    """The `likelihood:` section: the metric's settings, the held-out pairs and the cells it runs on."""

    records: str = "heldout"  # `heldout` or a record JSONL
    limit: int | None = Field(None, ge=2)  # the first N records
    methods: list[Method] | None = None


def plan(builder, spec: LikelihoodSpec) -> None:
    settings = LikelihoodSettings(**spec.model_dump(include=set(LikelihoodSettings.model_fields)))
    for cell in builder.chosen(spec):
        prompt = prompt_for(builder.experiment, cell.method)
        cell_settings = settings.model_copy(update={"prompt": prompt})
        builder.add(
            Stage(
                f"{cell.name}/likelihood",
                "likelihood",
                cell,
                {
                    "model": builder.source(cell),
                    "settings": cell_settings.model_dump(),
                    "limit": spec.limit,
                    "records": spec.records,
                    "prompting": parse_format(prompt).identity(),
                    "content": builder.content(spec.records),
                },
                run,
                builder.model_deps(cell),
            )
        )


def run(ctx: Context) -> LikelihoodResult:
    from rtune.evals.instructability import run as evaluate
    from rtune.progress import Bar

    records = ctx.stage.inputs["records"]
    path = ctx.env.file(records)
    settings = LikelihoodRun(
        **ctx.settings,
        model=model_dir(ctx),
        records=str(path or records),
        limit=ctx.stage.inputs["limit"],
        data_dir=ctx.env.data_root(),
    )
    with Bar(ctx.console) as bar:
        return evaluate(settings, bar)


def section(stages: list) -> Section:
    first = stages[0].result
    table = Section(
        "Judge-free likelihood metric",
        f"Share of held-out instructions whose own reference response the model scores above {first.n_distractors} "
        f"responses to other instructions, in the cell's prompt format (score `{first.headline}`; chance "
        f"{first.chance_accuracy:.3f}). Margin: reference score minus the best distractor's. "
        "95% bootstrap CIs over items.",
        ["Cell", "Accuracy", "Margin", "Other scores: accuracy (margin)", "Items"],
    )
    series = []
    for stage in stages:
        r = stage.result
        head = r.variants[r.headline]
        others = " · ".join(
            f"{name} {v.accuracy.value:.3f} ({v.margin.value:+.2f})"
            for name, v in r.variants.items()
            if name != r.headline
        )
        table.rows.append(
            [
                stage.cell,
                ci_text(head.accuracy.value, head.accuracy.ci_low, head.accuracy.ci_high),
                ci_text(head.margin.value, head.margin.ci_low, head.margin.ci_high, 2),
                others,
                str(r.n_items),
            ]
        )
        series.append((head.accuracy.value, head.accuracy.ci_low, head.accuracy.ci_high))
    table.figures.append(
        (
            "Likelihood accuracy (dashed: chance)",
            bars([s.cell for s in stages], {"accuracy": series}, "accuracy", first.chance_accuracy),
        )
    )
    return table


KIND = register(Kind("likelihood", LikelihoodResult, run, LikelihoodSpec, plan, section))
