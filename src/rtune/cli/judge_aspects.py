"""`rtune judge aspects`: JustEval-style 1–5 scores per aspect, with rationales, cached and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True, highlight=False)


def _mean_text(stat: dict | None) -> str:
    if not stat:
        return "-"
    low, high = stat["ci95"]
    return f"{stat['mean']:.2f} [{low:.2f}, {high:.2f}]" if low is not None else f"{stat['mean']:.2f}"


def command(
    outputs: Path = typer.Option(..., "--outputs", help="JSON/JSONL list of {instruction, output[, id][, generator][, category]}."),
    judge: str = typer.Option(..., "--judge", help="Judge spec: openai:MODEL or openai:MODEL@URL, vllm:MODEL, hf:MODEL."),
    out: Path = typer.Option(..., "--out", help="Run directory: scores.jsonl, summary.json, judge cache (rerun to resume)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N items."),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Tries per item when the answer cannot be read."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=16, help="Judge answer length cap."),
    safety_category: str = typer.Option("safety", "--safety-category", help="Items of this category get the safety score instead of the five aspects."),
    max_concurrency: int = typer.Option(8, "--max-concurrency", min=1, help="Judge requests in flight (openai)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size for an in-process judge (hf)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Score each output on helpfulness, clarity, factuality, depth and engagement (safety items: safety)."""
    from rtune.io import atomic_write_json, write_jsonl
    from rtune.judges.aspects import LOG_FILE, AspectsSettings, read_items, score_items, summarise
    from rtune.judges.caller import JudgeCaller, open_judge, settle_with_progress

    settings = AspectsSettings(judge=judge, max_attempts=max_attempts, max_new_tokens=max_new_tokens,
                               safety_category=safety_category, seed=seed)
    items = read_items(outputs, limit)
    generator, cache = open_judge(judge, out, concurrency=max_concurrency, batch_size=batch_size, api_key_env=api_key_env)
    caller = JudgeCaller(generator, cache, settings.max_attempts)
    log_path = out / LOG_FILE
    run = settle_with_progress("score", len(items), log_path, console,
                               lambda advance: score_items(items, settings, caller, log_path, advance))
    write_jsonl(log_path, run.rows)
    summary = {**summarise(run, items, settings), "judge_fingerprint": generator.fingerprint,
               "usage": caller.usage.report(judge), "failures": run.failures}
    atomic_write_json(out / "summary.json", summary)

    groups = summary["by_category"]
    for category, group in groups.items():
        if category == "all" and len(groups) == 2:
            continue  # one category: "all" would repeat it
        if not group.get("aspects"):
            console.print(f"{category}: no item could be scored")
            continue
        parts = [f"{name} {_mean_text(stat)}" for name, stat in group["aspects"].items()]
        overall = f"; overall {_mean_text(group['overall'])}" if "overall" in group else ""
        console.print(f"{category} (n={group['n']}): " + ", ".join(parts) + overall)
    if run.failures:
        console.print(f"[yellow]{len(run.failures)} items gave no readable answer after {max_attempts} tries; "
                      "excluded from the means (rerun to try them again)[/yellow]")
    console.print(f"judge: {caller.usage.describe(judge)}")
    console.print(f"wrote {log_path} ({len(run.rows)} items, {run.resumed} from an earlier run) and {out / 'summary.json'}")
