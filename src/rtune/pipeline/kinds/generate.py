"""Stage kind `generate`: a cell's model answers an instruction set (`rtune.generation.outputs`).

One stage per cell and instruction set, shared by every evaluation that reads that set (examples,
judges, the response-rate metric); its limit is the widest any of them asks for. The `examples`
section of an experiment asks for nothing else: its answers appear side by side in the report.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

from pydantic import BaseModel, Field

from rtune.pipeline.experiment import Selection
from rtune.pipeline.kinds.train import cell_cache, model_dir
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section

EXAMPLES = 6  # instructions shown side by side, drawn with a fixed seed
EXAMPLE_CHARS = 1500


class InstructionSet(Selection):
    """What the models answer: `heldout` (the packaged demo set), alpaca_eval, just_eval, or a file."""

    instructions: str = "heldout"
    limit: int | None = Field(None, ge=1)


class GenerateStageResult(BaseModel):
    n: int
    hit_token_limit: int  # answers cut at max_new_tokens


def prompt_for(experiment, method: str) -> str:
    """The prompt format of a cell: URIAL methods use their prompt file (the experiment's, else rtune's own)."""
    if method in ("urial", "urial_r", "0shot"):
        named = experiment.generation.urial_prompts.get(method)
        return experiment.prompt_file(named) if named else method
    return experiment.generation.prompt


def widest_limit(experiment, instructions: str) -> int | None:
    """One generation per instruction set serves every evaluation reading it: the largest limit asked for."""
    limits = [
        spec.limit
        for spec in experiment.evals.values()
        if isinstance(spec, InstructionSet) and spec.instructions == instructions
    ]
    return None if not limits or any(limit is None for limit in limits) else max(limits)


def key(cell, instructions: str) -> str:
    return f"{cell.name}/generate-{Path(instructions).stem}"


def add_stage(builder, cell, instructions: str) -> str:
    from rtune.prompting import parse_format

    experiment, g = builder.experiment, builder.experiment.generation
    prompt = prompt_for(experiment, cell.method)
    settings = {
        "method": cell.method,
        "instructions": instructions,
        "limit": widest_limit(experiment, instructions),
        "backend": g.backend,
        "max_new_tokens": g.max_new_tokens,
        "precision": g.precision,
        "prompt": prompt,
    }
    return builder.add(
        Stage(
            key(cell, instructions),
            "generate",
            cell,
            {
                "model": builder.source(cell),
                "settings": settings,
                "prompting": parse_format(prompt).identity(),
                "content": builder.content(instructions),
            },
            run,
            builder.model_deps(cell),
        )
    )


def run(ctx: Context) -> GenerateStageResult:
    from rtune.generation.outputs import GenerateSettings, generate_outputs
    from rtune.progress import Bar

    s, experiment = ctx.settings, ctx.env
    settings = GenerateSettings(
        model=model_dir(ctx),
        input=str(experiment.file(s["instructions"]) or s["instructions"]),
        out=ctx.work / "outputs.json",
        prompt=s["prompt"],
        backend=s["backend"],
        batch_size=experiment.generation.batch_size,
        max_new_tokens=s["max_new_tokens"],
        precision=s["precision"],
        limit=s["limit"],
        data_dir=experiment.data_root(),
        cache=cell_cache(ctx),
        name=ctx.stage.cell.name,
    )
    with Bar(ctx.console) as bar:
        report = generate_outputs(settings, bar)
    return GenerateStageResult(n=report.n, hit_token_limit=report.hit_token_limit)


def plan_examples(builder, spec: InstructionSet) -> None:
    for cell in builder.chosen(spec):
        builder.generation(cell, spec.instructions)


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " …"


MARKDOWN_ENTITIES = str.maketrans({c: f"&#{ord(c)};" for c in "`*_#["})


def _quoted(text: str) -> str:
    """A Markdown block quote that shows the text as written (no Markdown or HTML of its own).

    One pass over the characters: escaping `#` after `'` had become `&#x27;` gave `&&#35;x27;`."""
    return "\n".join(
        "> " + html.escape(line, quote=False).translate(MARKDOWN_ENTITIES) or ">"
        for line in _clip(text).splitlines() or [""]
    )


def section(stages: list) -> Section | None:
    """A seeded draw of instructions per instruction set, every cell's answer side by side (harmful
    prompts stay out)."""
    from rtune.io import read_json

    by_set: dict[str, dict[str, list]] = {}
    for stage in stages:
        if (stage.folder / "outputs.json").exists():
            by_set.setdefault(stage.key.rsplit("/generate-", 1)[-1], {})[stage.cell] = read_json(
                stage.folder / "outputs.json"
            )
    html_parts, md_parts = [], []
    for name, outputs in by_set.items():
        n = min(len(rows) for rows in outputs.values())
        html_parts.append(f"<h3>{html.escape(name)}</h3>")
        md_parts.append(f"### {name}")
        for index in sorted(random.Random(0).sample(range(n), min(EXAMPLES, n))):
            instruction = next(iter(outputs.values()))[index]["instruction"]
            answers = "".join(
                f"<div class='answer'><h4>{html.escape(cell)}</h4>"
                f"<pre>{html.escape(_clip(rows[index]['output']))}</pre></div>"
                for cell, rows in outputs.items()
            )
            html_parts.append(
                "<div class='example'><p class='instruction'><b>Instruction:</b></p>"
                f"<pre>{html.escape(_clip(instruction))}"
                f"</pre><div class='answers'>{answers}</div></div>"
            )
            md_parts.append(f"**Instruction {index + 1}**\n\n{_quoted(instruction)}")
            md_parts += [f"*{cell}*\n\n{_quoted(rows[index]['output'])}" for cell, rows in outputs.items()]
    if not html_parts:
        return None
    return Section(
        "Example outputs",
        f"{EXAMPLES} instructions per set, drawn with seed 0 (not picked by hand); every cell's answer side by side.",
        html_extra="".join(html_parts),
        markdown_extra="\n\n".join(md_parts),
    )


KIND = register(Kind("generate", GenerateStageResult, run, section=section))
EXAMPLES_KIND = register(Kind("examples", spec=InstructionSet, plan=plan_examples))
