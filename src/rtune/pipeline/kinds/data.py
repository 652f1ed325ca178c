"""Stage kind `data`: the training records of one dataset entry, optionally with N refusal examples mixed in.

For an entry with `refine:` the chain is data (built) → refine → data (+ refusals, when mixed): the
last stage reads the refined records instead of building them.
"""

from __future__ import annotations

from pydantic import BaseModel

from rtune.pipeline.kinds import refine
from rtune.pipeline.plan import Context, Stage
from rtune.pipeline.registry import Kind, register


class DataSettings(BaseModel):
    source: str
    max_examples: int | None
    seed: int
    safety: int  # refusal examples appended
    safety_source: str


class DataResult(BaseModel):
    records: int
    safety_added: int
    note: str = ""


def add_stage(builder, cell) -> str:
    """The stage whose records a trained cell reads (shared by every cell on the same dataset and mixture)."""
    if builder.experiment.datasets[cell.dataset].refine is None:
        return _add(builder, cell.dataset, cell.safety)
    refined = refine.add_stage(builder, cell.dataset, _add(builder, cell.dataset, 0))
    return _add(builder, cell.dataset, cell.safety, refined) if cell.safety else refined


def _add(builder, dataset: str, safety: int, records_from: str | None = None) -> str:
    """A data stage: records built from the source, or read from `records_from`; then `safety` refusals mixed in."""
    experiment = builder.experiment
    entry = experiment.datasets[dataset]
    settings = DataSettings(
        source=entry.source,
        max_examples=entry.max_examples,
        seed=entry.seed,
        safety=safety,
        safety_source=experiment.safety_source,
    )
    return builder.add(
        Stage(
            f"data/{dataset}" + ("+refined" if records_from else "") + (f"+safety{safety}" if safety else ""),
            "data",
            None,
            {
                "settings": settings.model_dump(),
                "content": builder.content(entry.source),
                "safety_content": builder.content(experiment.safety_source) if safety else None,
            },
            run,
            (records_from,) if records_from else (),
        )
    )


def run(ctx: Context) -> DataResult:
    from rtune.data.records import keep_nonempty, read_records, write_records
    from rtune.data.safety_mix import mix_records
    from rtune.data.sources import build_records

    s, experiment = DataSettings.model_validate(ctx.settings), ctx.env
    root = experiment.data_root()
    if ctx.stage.deps:  # refined records
        records, note = read_records(ctx.dirs[ctx.stage.deps[0]] / "records.jsonl").records, ""
    else:
        built = build_records(str(experiment.file(s.source) or s.source), root, s.max_examples, s.seed)
        records, note = keep_nonempty(built.records, strict=False, where=s.source).records, built.note
    added = 0
    if s.safety:
        refusals = build_records(str(experiment.file(s.safety_source) or s.safety_source), root)
        mix = mix_records(
            records,
            keep_nonempty(refusals.records, strict=False, where=s.safety_source).records,
            s.safety,
            "keyword",
            s.seed,
            s.safety_source,
        )
        records, added = mix.records, mix.safety_added
    write_records(ctx.work / "records.jsonl", records)
    return DataResult(records=len(records), safety_added=added, note=note)


KIND = register(Kind("data", DataResult, run))
