"""`rtune eval likelihood`: the judge-free instructability metric on held-out (instruction, response) pairs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rtune.cli.options import option, settings
from rtune.evals.instructability import LikelihoodRun as S


def command(
    model: str = option(S, "model"),
    records: str = option(S, "records"),
    data_dir: Path | None = option(S, "data_dir"),
    out: Path | None = option(S, "out"),
    limit: int | None = option(S, "limit", min=2),
    distractors: int | None = option(S, "distractors", min=1),
    max_response_tokens: int | None = option(S, "max_response_tokens", min=0),
    headline: str = option(S, "headline"),
    prompt: str = option(S, "prompt"),
    seed: int = option(S, "seed"),
    batch_size: int = option(S, "batch_size", min=1),
) -> None:
    """Does the model rank each instruction's own reference response above responses to other instructions?"""
    values = dict(locals())
    from rtune.evals.instructability import format_summary, run
    from rtune.progress import Bar

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    with Bar(console) as bar:
        result = run(settings(S, **values), bar)
    console.print(format_summary(result))
    if out is not None:
        console.print(f"wrote {out}")
