"""Stage kind `aspects`: a judge scores a cell's answers on JustEval's aspects (`rtune.judges.aspects`)."""

from __future__ import annotations

from rtune.judges.aspect_prompts import FIELDS
from rtune.judges.aspects import AspectsSettings, AspectsSummary
from rtune.pipeline.kinds.generate import InstructionSet
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.prompting.files import load_prompt_file
from rtune.report.figures import Section, bars, ci_text

ASPECT_ORDER = ("helpfulness", "clarity", "factuality", "depth", "engagement", "safety")
TEMPLATES = ("template", "safety_template")


class AspectsSpec(InstructionSet):
    judge: str
    template: str | None = None  # prompt files in just-eval's syntax (relative to the experiment, or data:PATH);
    safety_template: str | None = None  # default: rtune's own prompts
    system_prompt: str | None = None


def plan(builder, spec: AspectsSpec) -> None:
    """Template files are hashed by their text and copied into the stage, so their paths never change a key."""
    experiment = builder.experiment
    settings = {"judge": spec.judge, "limit": spec.limit}
    if spec.system_prompt is not None:
        settings["system_prompt"] = spec.system_prompt
    texts = {
        name: load_prompt_file(
            experiment.prompt_file(getattr(spec, name)), "template", FIELDS, f"evals.aspects.{name}"
        ).text
        for name in TEMPLATES
        if getattr(spec, name) is not None
    }
    inputs = {"settings": settings, **({"templates": texts} if texts else {})}
    for cell in builder.chosen(spec):
        answers = builder.generation(cell, spec.instructions)
        builder.add(Stage(f"{cell.name}/aspects", "aspects", cell, inputs, run, (answers,)))


def run(ctx: Context) -> AspectsSummary:
    from rtune.io import atomic_write_text
    from rtune.judges.aspects import run as judge
    from rtune.progress import Bar

    templates = {}
    for name, text in ctx.stage.inputs.get("templates", {}).items():
        templates[name] = ctx.work / f"{name}.txt"
        atomic_write_text(templates[name], text)
    settings = AspectsSettings(
        outputs=ctx.dirs[ctx.stage.deps[0]] / "outputs.json",
        out=ctx.work,
        **ctx.settings,
        **templates,
        **ctx.env.server.model_dump(),
    )
    with Bar(ctx.console) as bar:
        return AspectsSummary.model_validate(judge(settings, bar).summary_json())


def section(stages: list) -> Section | None:
    groups = [stage.result.by_category.get("all") for stage in stages]
    names = [a for a in ASPECT_ORDER if any(g is not None and g.aspects and a in g.aspects for g in groups)]
    if not names:
        return None
    table = Section(
        "Aspect scores (1–5)",
        "Mean judge score per aspect with bootstrap 95% CIs; overall = mean of the five aspects.",
        ["Cell", *names, "Overall"],
    )
    series: dict[str, list] = {name: [] for name in names}
    for stage, group in zip(stages, groups, strict=False):
        cells = []
        for name in names:
            stat = (group.aspects or {}).get(name) if group else None
            cells.append(ci_text(stat.mean, *stat.ci95, digits=2) if stat else "–")
            series[name].append(
                (stat.mean, *stat.ci95) if stat and stat.ci95[0] is not None else ((stat.mean if stat else 0.0),) * 3
            )
        overall = group.overall if group else None
        table.rows.append([stage.cell, *cells, ci_text(overall.mean, *overall.ci95, digits=2) if overall else "–"])
    table.figures.append(("Aspect scores", bars([s.cell for s in stages], series, "score (1–5)")))
    return table


KIND = register(Kind("aspects", AspectsSummary, run, AspectsSpec, plan, section))
