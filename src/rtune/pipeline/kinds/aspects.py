"""Stage kind `aspects`: a judge scores a cell's answers on JustEval's aspects (`rtune.judges.aspects`)."""

from __future__ import annotations

from rtune.judges.aspects import AspectsSettings, AspectsSummary
from rtune.pipeline.kinds.generate import InstructionSet
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section, bars, ci_text

ASPECT_ORDER = ("helpfulness", "clarity", "factuality", "depth", "engagement", "safety")


class AspectsSpec(InstructionSet):
    judge: str


def plan(builder, spec: AspectsSpec) -> None:
    for cell in builder.chosen(spec):
        builder.add(Stage(f"{cell.name}/aspects", "aspects", cell, {"settings": {"judge": spec.judge, "limit": spec.limit}},
                          run, (builder.generation(cell, spec.instructions),)))


def run(ctx: Context) -> AspectsSummary:
    from rtune.judges.aspects import run as judge
    from rtune.progress import Bar

    settings = AspectsSettings(outputs=ctx.dirs[ctx.stage.deps[0]] / "outputs.json", out=ctx.work, **ctx.settings)
    with Bar(ctx.console) as bar:
        return AspectsSummary.model_validate(judge(settings, bar).summary_json())


def section(stages: list) -> Section | None:
    groups = [stage.result.by_category.get("all") for stage in stages]
    names = [a for a in ASPECT_ORDER if any(g is not None and g.aspects and a in g.aspects for g in groups)]
    if not names:
        return None
    table = Section("Aspect scores (1–5)", "Mean judge score per aspect with bootstrap 95% CIs; overall = mean of the five aspects.",
                    ["Cell", *names, "Overall"])
    series: dict[str, list] = {name: [] for name in names}
    for stage, group in zip(stages, groups):
        cells = []
        for name in names:
            stat = (group.aspects or {}).get(name) if group else None
            cells.append(ci_text(stat.mean, *stat.ci95, digits=2) if stat else "–")
            series[name].append((stat.mean, *stat.ci95) if stat and stat.ci95[0] is not None else ((stat.mean if stat else 0.0),) * 3)
        overall = group.overall if group else None
        table.rows.append([stage.cell, *cells, ci_text(overall.mean, *overall.ci95, digits=2) if overall else "–"])
    table.figures.append(("Aspect scores", bars([s.cell for s in stages], series, "score (1–5)")))
    return table


KIND = register(Kind("aspects", AspectsSummary, run, AspectsSpec, plan, section))
