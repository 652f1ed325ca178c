"""`rtune data mix-safety`: append N seeded refusal examples to a training record file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rtune.data.records import write_records
from rtune.data.safety_mix import DEFAULT_SAFETY_SOURCE, FILTERS, build_safety_mix
from rtune.errors import RtuneError
from rtune.io import check_output

console = Console(stderr=True, soft_wrap=True, highlight=False)


def command(
    target: Path = typer.Argument(..., help="Record JSONL to add refusals to (e.g. from `rtune data build`)."),
    out: Path = typer.Option(..., "--out", help="Mixed record JSONL to write."),
    n: int = typer.Option(200, "--n", min=0, help="Number of refusal examples to add (the paper uses 100, 200, 500)."),
    safety: str = typer.Option(
        DEFAULT_SAFETY_SOURCE, "--safety", help="Refusal source: safety-tuned-llamas or a .jsonl/.json/.csv file."
    ),
    refusal_filter: str = typer.Option(
        "keyword",
        "--filter",
        help="keyword: keep responses with 'ai' or 'sorry' as a whole word (the paper's rule); none: keep all.",
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the paper uses 0)."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Local copies of the named datasets (default: $RTUNE_DATA_DIR)."
    ),
) -> None:
    """Mix a seeded sample of refusal examples into a training set, marked by their `source`."""
    if refusal_filter not in FILTERS:
        raise RtuneError(f"--filter must be one of {', '.join(FILTERS)}, got '{refusal_filter}'")
    check_output(out, inputs=[target, safety])
    mix = build_safety_mix(target, n, safety, refusal_filter, seed, data_dir)  # type: ignore[arg-type]
    write_records(out, mix.records)
    console.print(
        f"{mix.safety_source}: {mix.safety_total} refusal examples, "
        f"{mix.safety_eligible} pass --filter {refusal_filter}, "
        f"{mix.safety_added} sampled (seed {seed})"
        + (f"; skipped {mix.safety_skipped_empty} empty" if mix.safety_skipped_empty else "")
    )
    console.print(
        f"wrote {len(mix.records)} records to {out}: {mix.target_count} from {target}"
        + (f" (skipped {mix.target_skipped_empty} empty)" if mix.target_skipped_empty else "")
        + f" + {mix.safety_added} refusals (source '{mix.safety_source}')"
    )
