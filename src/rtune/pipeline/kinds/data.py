"""Stage kind `data`: the training records of one dataset entry, optionally with N refusal examples mixed in."""

from __future__ import annotations

from pydantic import BaseModel

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
    """The data stage a trained cell reads (shared by every cell on the same dataset and mixture)."""
    experiment = builder.experiment
    entry = experiment.datasets[cell.dataset]
    settings = DataSettings(source=entry.source, max_examples=entry.max_examples, seed=entry.seed, safety=cell.safety,
                            safety_source=experiment.safety_source)
    return builder.add(Stage(
        f"data/{cell.dataset}" + (f"+safety{cell.safety}" if cell.safety else ""), "data", None,
        {"settings": settings.model_dump(), "content": builder.content(entry.source),
         "safety_content": builder.content(experiment.safety_source) if cell.safety else None}, run))


def run(ctx: Context) -> DataResult:
    from rtune.data.records import keep_nonempty, write_records
    from rtune.data.safety_mix import mix_records
    from rtune.data.sources import build_records

    s, experiment = DataSettings.model_validate(ctx.settings), ctx.env
    root = experiment.data_root()
    built = build_records(str(experiment.file(s.source) or s.source), root, s.max_examples, s.seed)
    records = keep_nonempty(built.records, strict=False, where=s.source).records
    added = 0
    if s.safety:
        refusals = build_records(str(experiment.file(s.safety_source) or s.safety_source), root)
        mix = mix_records(records, keep_nonempty(refusals.records, strict=False, where=s.safety_source).records,
                          s.safety, "keyword", s.seed, s.safety_source)
        records, added = mix.records, mix.safety_added
    write_records(ctx.work / "records.jsonl", records)
    return DataResult(records=len(records), safety_added=added, note=built.note)


KIND = register(Kind("data", DataResult, run))
