"""`rtune judge pairwise`: AlpacaEval-style preferences of a model's outputs over reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rtune.errors import RtuneError

console = Console(stderr=True, soft_wrap=True, highlight=False)


def _percent(value: float | None, error: float | None = None) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.2f}" + (f" ± {error:.2f}" if error is not None and error == error else "")


def command(
    outputs: Path = typer.Option(..., "--outputs", help="The model's outputs: JSON/JSONL list of {instruction, output, generator}."),
    reference: Path = typer.Option(..., "--reference", help="Reference outputs for the same instructions (output_1 in the annotations)."),
    judge: str = typer.Option(..., "--judge", help="Judge spec: openai:MODEL or openai:MODEL@URL, vllm:MODEL, hf:MODEL."),
    out: Path = typer.Option(..., "--out", help="Run directory: annotations.json, leaderboard.csv, run.json, judge cache (rerun to resume)."),
    mode: str = typer.Option("weighted", "--mode", help="weighted: one token, preference from log-probabilities; parsed: verdict read from text."),
    seed: int = typer.Option(0, "--seed", help="Draws which output each comparison shows first."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N shared instructions."),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Tries per item when the answer cannot be read."),
    top_logprobs: int = typer.Option(20, "--top-logprobs", min=2, max=20, help="Alternatives read per token (weighted mode)."),
    max_concurrency: int = typer.Option(8, "--max-concurrency", min=1, help="Judge requests in flight (openai)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size for an in-process judge (hf)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."),
    no_lc: bool = typer.Option(False, "--no-lc", help="Skip the length-controlled win rate."),
) -> None:
    """Ask a judge which output is better for each instruction both files share; write AlpacaEval files."""
    from rtune.annotations import write_annotations
    from rtune.io import atomic_write_json
    from rtune.judges.caller import JudgeCaller, open_judge, settle_with_progress
    from rtune.judges.pairwise import LOG_FILE, PairwiseSettings, align, annotation_records, judge_pairs, write_leaderboard
    from rtune.metrics import summarize

    if mode not in ("weighted", "parsed"):
        raise RtuneError(f"--mode must be weighted or parsed, got '{mode}'")
    settings = PairwiseSettings(judge=judge, mode=mode, seed=seed, max_attempts=max_attempts, top_logprobs=top_logprobs)
    alignment = align(outputs, reference, limit)
    console.print(f"{len(alignment.pairs)} instructions to compare; {alignment.only_in_outputs} only in {outputs.name}, "
                  f"{alignment.only_in_reference} only in {reference.name} (skipped)")
    generator, cache = open_judge(judge, out, concurrency=max_concurrency, batch_size=batch_size, api_key_env=api_key_env)
    caller = JudgeCaller(generator, cache, settings.max_attempts)
    log_path = out / LOG_FILE
    run = settle_with_progress("judge", len(alignment.pairs), log_path, console,
                               lambda advance: judge_pairs(alignment.pairs, settings, caller, log_path, advance))

    records = annotation_records(run, alignment.pairs, settings)
    write_annotations(out / "annotations.json", records)
    report = summarize(records, str(out / "annotations.json"), length_controlled=not no_lc)
    write_leaderboard(out / "leaderboard.csv", report)
    atomic_write_json(out / "run.json", {
        **settings.model_dump(), "annotator": settings.annotator, "judge_fingerprint": generator.fingerprint,
        "outputs": str(outputs), "reference": str(reference), "n_compared": len(alignment.pairs),
        "only_in_outputs": alignment.only_in_outputs, "only_in_reference": alignment.only_in_reference,
        "n_annotated": len(run.annotations), "n_failed": len(run.failures), "n_resumed": run.resumed,
        "usage": caller.usage.report(judge), "metrics": report.model_dump(mode="json"), "failures": run.failures,
    })

    lc = _percent(report.length_controlled_winrate, report.lc_standard_error)
    console.print(f"{report.generator or 'model'} vs {report.baseline or 'reference'}: win rate {_percent(report.win_rate, report.standard_error)}, "
                  f"LC win rate {lc}{f' ({report.lc_note})' if report.lc_note else ''}, n={report.n}")
    if run.failures:
        console.print(f"[yellow]{len(run.failures)} comparisons gave no readable answer after {max_attempts} tries; "
                      "stored with preference null and left out of the win rate (rerun to try them again)[/yellow]")
    console.print(f"judge: {caller.usage.describe(judge)}")
    console.print(f"wrote {out / 'annotations.json'} ({len(run.annotations)} annotated, {run.resumed} from an earlier run), "
                  f"{out / 'leaderboard.csv'}, {out / 'run.json'}")
