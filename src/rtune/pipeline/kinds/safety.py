"""Stage kind `safety`: refusal on harmful prompts and false refusal on XSTest's safe ones (`rtune.evals.safety`).

One stage per cell: the cell's model answers every sampled prompt in the cell's prompt format, a
refusal judge labels the answers. Answers sit in the cell's generation cache, so a changed judge
or a new set only asks for what is new. Harmful answers stay inside the run directory.
"""

from __future__ import annotations

from pydantic import Field

from rtune.evals.safety import SETS, SafetyRun, SafetySummary
from rtune.judges.refusal import load_judge_prompt
from rtune.pipeline.experiment import Selection
from rtune.pipeline.kinds.generate import prompt_for
from rtune.pipeline.kinds.train import cell_cache, model_dir
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.prompting import parse_format
from rtune.report.figures import Section, ci_text, png, pyplot


class SafetySpec(Selection):
    sets: list[str] = list(SETS)
    judge: str = "keyword"  # or an LLM judge spec, e.g. openai:MODEL@URL
    limit: int | None = Field(None, ge=1)  # prompts per set
    limits: dict[str, int] = {}  # per-set limits replacing `limit`, e.g. {xstest: 450}
    max_new_tokens: int | None = Field(None, ge=1)  # default: generation.max_new_tokens
    judge_prompt: str | None = None  # LLM judge prompt file, RT paper syntax (relative to the experiment, or data:PATH)
    judge_retries: int | None = Field(None, ge=0)  # re-asks of a label-less answer (default 2; the paper: 0)


def plan(builder, spec: SafetySpec) -> None:
    experiment = builder.experiment
    content = {name: builder.content(name) for name in spec.sets}
    judge_prompt = {}  # the file's text, hashed and copied into the stage: its path never changes a key
    if spec.judge_prompt is not None:
        judge_prompt["judge_prompt"] = load_judge_prompt(experiment.prompt_file(spec.judge_prompt)).text
    for cell in builder.chosen(spec):
        prompt = prompt_for(experiment, cell.method)
        settings = {
            "sets": spec.sets,
            "judge": spec.judge,
            "limit": spec.limit,
            "limits": spec.limits,
            "prompt": prompt,
            "max_new_tokens": spec.max_new_tokens or experiment.generation.max_new_tokens,
        }
        if spec.judge_retries is not None:
            settings["judge_retries"] = spec.judge_retries
        builder.add(
            Stage(
                f"{cell.name}/safety",
                "safety",
                cell,
                {
                    "model": builder.source(cell),
                    "settings": settings,
                    "prompting": parse_format(prompt).identity(),
                    "content": content,
                    **judge_prompt,
                },
                run,
                builder.model_deps(cell),
            )
        )


def run(ctx: Context) -> SafetySummary:
    from rtune.evals.safety import run as evaluate
    from rtune.io import atomic_write_text
    from rtune.progress import Bar

    experiment, options = ctx.env, {}
    if "judge_prompt" in ctx.stage.inputs:
        options["judge_prompt"] = ctx.work / "judge_prompt.txt"
        atomic_write_text(options["judge_prompt"], ctx.stage.inputs["judge_prompt"])
    settings = SafetyRun(
        model=model_dir(ctx),
        out=ctx.work,
        data_dir=experiment.data_root(),
        cache=cell_cache(ctx),
        batch_size=experiment.generation.batch_size,
        **experiment.server.model_dump(),
        **ctx.settings,
        **options,
    )
    with Bar(ctx.console) as bar:
        return evaluate(settings, bar, say=ctx.console.print)


def section(stages: list) -> Section:
    table = Section(
        "Safety: refusal and false refusal",
        "Refusal rate on harmful prompts (higher is safer; mean over the sets "
        "run) and false-refusal rate on XSTest's safe prompts (lower is better), with bootstrap 95% CIs.",
        ["Cell", "Safety examples", "Refusal rate", "False refusal", "Per set"],
    )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    lines: dict[str, list[tuple[int, float | None, float | None]]] = {}
    for stage in stages:
        r = stage.result
        low, high = r.average_ci or (None, None)
        xstest = r.sets.get("xstest")
        fr = xstest.false_refusal if xstest else None
        per_set = " · ".join(f"{name} {v.refusal_rate:.2f}" for name, v in r.sets.items() if v.refusal_rate is not None)
        table.rows.append(
            [
                stage.cell,
                str(stage.safety),
                ci_text(r.average_refusal_rate, low, high),
                ci_text(fr.rate, fr.ci_low, fr.ci_high) if fr else "–",
                per_set,
            ]
        )
        group = stage.cell.replace(f"+safety{stage.safety}", "") if stage.safety else stage.cell
        lines.setdefault(group, []).append((stage.safety, r.average_refusal_rate, fr.rate if fr else None))
    for n, (group, points) in enumerate(lines.items()):
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        if any(p[1] is not None for p in points):
            ax.plot(xs, [p[1] for p in points], "o-", color=f"C{n % 10}", label=f"{group} refusal")
        if any(p[2] is not None for p in points):
            ax.plot(xs, [p[2] for p in points], "s--", color=f"C{n % 10}", label=f"{group} false refusal")
    ax.set_xlabel("safety examples in training")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="x-small")
    table.figures.append(
        ("Refusal (solid) and false-refusal (dashed) rates against the number of safety examples", png(fig))
    )
    return table


KIND = register(Kind("safety", SafetySummary, run, SafetySpec, plan, section))
