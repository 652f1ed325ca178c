"""`rtune eval safety`: refusal rates on AdvBench, HarmBench, MaliciousInstruct, XSTest, and XSTest false refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rtune.errors import RtuneError

console = Console(stderr=True, soft_wrap=True, highlight=False)


def command(
    out: Path = typer.Option(..., "--out", help="Run directory: per-item results, summary.json, report.md (rerun to resume)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec to generate with (hf:..., vllm:..., openai:...@URL, or a bare model)."),
    outputs: Optional[Path] = typer.Option(None, "--outputs", help="Score an existing JSON list of {instruction, output[, set][, id]} instead of generating."),
    sets: str = typer.Option("advbench,harmbench,malicious_instruct,xstest", "--sets", help="Comma-separated sets."),
    judge: str = typer.Option("keyword", "--judge", help="keyword, or a judge model spec for the LLM judge."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N prompts per set (seeded, spread over subsets)."),
    seed: int = typer.Option(0, "--seed", help="Seed for --limit sampling and the bootstrap."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local benchmark copies (default: $RTUNE_DATA_DIR, else the hub)."),
    max_new_tokens: int = typer.Option(2048, "--max-new-tokens", min=1, help="Answer length cap (the paper: 2,048)."),
    prompt_format: str = typer.Option("chat", "--prompt-format", help="chat: the model's chat template (Tulu when it has none); tulu: the raw Tulu prompt."),
    judge_max_new_tokens: int = typer.Option(2048, "--judge-max-new-tokens", min=1),
    judge_retries: int = typer.Option(2, "--judge-retries", min=0, help="Re-asks when the LLM judge gives no label."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size for in-process models."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Generation cache file (default: OUT/cache.sqlite)."),
    hide_examples: bool = typer.Option(False, "--hide-examples", help="Leave example prompts and answers out of report.md."),
) -> None:
    """Refusal evaluation: generate (or read) answers, judge refusals, report rates with bootstrap CIs."""
    from rtune.evals.safety import SET_TITLES, SafetyRun, parse_sets, run_safety_eval

    if prompt_format not in ("chat", "tulu"):
        raise RtuneError(f"--prompt-format must be chat or tulu, got '{prompt_format}'")
    run = SafetyRun(model=model, outputs=str(outputs) if outputs else None, sets=parse_sets(sets), judge=judge, limit=limit,
                    seed=seed, max_new_tokens=max_new_tokens, prompt_format=prompt_format,
                    judge_max_new_tokens=judge_max_new_tokens, judge_retries=judge_retries)
    summary = run_safety_eval(run, out, data_dir, hide_examples, cache, batch_size, say=console.print)
    for name, result in summary.sets.items():
        if result.refusal_rate is not None:
            console.print(f"{SET_TITLES[name]}: refusal rate {result.refusal_rate:.3f} [{result.ci_low:.3f}, {result.ci_high:.3f}]")
        if result.false_refusal is not None:
            fr = result.false_refusal
            console.print(f"{SET_TITLES[name]} safe: false-refusal rate {fr.rate:.3f} [{fr.ci_low:.3f}, {fr.ci_high:.3f}] (n={fr.n})")
    if summary.average_refusal_rate is not None and len(summary.average_over) > 1:
        console.print(f"average refusal rate over {len(summary.average_over)} sets: {summary.average_refusal_rate:.3f}")
    if summary.unclassified:
        console.print(f"[yellow]{summary.unclassified} judge answers unclassified after retries[/yellow]")
    console.print(f"wrote {out / 'report.md'}, {out / 'summary.json'}, {out / 'results.jsonl'}")
