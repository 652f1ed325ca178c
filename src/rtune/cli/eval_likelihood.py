"""`rtune eval likelihood`: the judge-free instructability metric on held-out (instruction, response) pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True, highlight=False)


def command(
    model: str = typer.Option(..., "--model", help="Registered name (gemma-3-270m), local folder (a trained run's merged/), .gguf or hub id."),
    records: Optional[Path] = typer.Option(None, "--records", help="Record JSONL of held-out pairs (default: the packaged demo held-out set)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the full result (per-item scores included) as JSON here."),
    distractors: Optional[int] = typer.Option(None, "--distractors", min=1, help="Other responses per item, sampled with --seed (default: all others)."),
    max_response_tokens: int = typer.Option(48, "--max-response-tokens", min=0, help="Score each response's first N tokens, so all have the same length (0: whole responses)."),
    headline: str = typer.Option("total", "--headline", help="Score reported as `accuracy`/`margin`: total, per_token or pmi."),
    seed: int = typer.Option(0, "--seed", help="Distractor sampling and bootstrap seed."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per forward pass."),
) -> None:
    """Does the model rank each instruction's own reference response above responses to other instructions?"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtune.data.records import read_records
    from rtune.errors import RtuneError
    from rtune.evals.likelihood import DEFAULT_RECORDS, VARIANTS, LikelihoodSettings, evaluate_likelihood, format_summary
    from rtune.io import atomic_write_json

    if headline not in VARIANTS:
        raise RtuneError(f"--headline must be one of {', '.join(VARIANTS)}, got '{headline}'")
    path = records or DEFAULT_RECORDS
    settings = LikelihoodSettings(distractors=distractors, max_response_tokens=max_response_tokens or None, headline=headline,
                                  seed=seed, batch_size=batch_size)
    with Progress(TextColumn("[cyan]score"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("score", total=None)
        result = evaluate_likelihood(model, read_records(path).records, settings, str(path),
                                     lambda done, total: bar.update(task, completed=done, total=total))
    if out is not None:
        atomic_write_json(out, result.model_dump(mode="json"))
    console.print(format_summary(result))
    if out is not None:
        console.print(f"wrote {out}")
