"""Stage kind `refine`: a dataset's records rewritten by an LLM refiner before training (`rtune.data.refine`).

A dataset entry with `refine: {refiner: SPEC, prompt_file: FILE, max_new_tokens: N}` trains on refined
records: its data stage builds them, this stage refines them (each answer cached, so a killed run
resumes), and a safety mixture's refusal examples are mixed in afterwards, as they are (the kind
`data` adds that stage). Without `refine:` no stage of this kind exists and no key changes. The
prompt is hashed by its text (a file is copied into the stage), the refiner by its spec, as judges are.
"""

from __future__ import annotations

from pydantic import BaseModel

from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register
from rtune.report.figures import Section


class RefineStageResult(BaseModel):
    records: int
    extracted: int  # answers with text after the marker
    changed: int
    extraction_rate: float  # the paper's: share of records whose completion changed
    no_marker: int  # kept original: no marker, or nothing after it
    cut_off: int  # kept original: the answer hit max_new_tokens


def add_stage(builder, dataset: str, records_key: str) -> str:
    """The stage refining the records of `records_key` (the dataset's unmixed data stage)."""
    from rtune.data.refine import REFINE_PROMPT, load_refine_prompt

    experiment = builder.experiment
    spec = experiment.datasets[dataset].refine
    if spec.prompt_file is not None:
        prompt = {"file": load_refine_prompt(experiment.prompt_file(spec.prompt_file)).text}
    else:
        prompt = {"rtune": REFINE_PROMPT}
    settings = {"refiner": spec.refiner, "max_new_tokens": spec.max_new_tokens}
    return builder.add(
        Stage(f"data/{dataset}+refined", "refine", None, {"settings": settings, "prompt": prompt}, run, (records_key,))
    )


def run(ctx: Context) -> RefineStageResult:
    from rtune.data.refine import RefineSettings
    from rtune.data.refine import run as refine
    from rtune.io import atomic_write_text
    from rtune.progress import Bar

    prompt_file = None
    if "file" in ctx.stage.inputs["prompt"]:
        prompt_file = ctx.work / "prompt.txt"
        atomic_write_text(prompt_file, ctx.stage.inputs["prompt"]["file"])
    settings = RefineSettings(
        file=ctx.dirs[ctx.stage.deps[0]] / "records.jsonl",
        out=ctx.work / "records.jsonl",
        prompt_file=prompt_file,
        batch_size=ctx.env.generation.batch_size,
        **ctx.env.server.model_dump(),
        **ctx.settings,
    )
    with Bar(ctx.console) as bar:
        report = refine(settings, bar)
    return RefineStageResult(
        records=len(report.records),
        extracted=report.extracted,
        changed=report.changed,
        extraction_rate=report.extraction_rate,
        no_marker=len(report.no_marker),
        cut_off=len(report.cut_off),
    )


def section(stages: list) -> Section:
    table = Section(
        "Response refinement",
        "Training records rewritten by the refiner; the extraction rate is the "
        "paper's (share of completions that changed). Records without a usable answer keep the original.",
        ["Stage", "Records", "Changed", "Extraction rate", "No marker", "Cut off"],
    )
    for stage in stages:
        r = stage.result
        table.rows.append(
            [stage.key, str(r.records), str(r.changed), f"{r.extraction_rate:.1%}", str(r.no_marker), str(r.cut_off)]
        )
    return table


KIND = register(Kind("refine", RefineStageResult, run, section=section))
