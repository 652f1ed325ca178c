"""`rtune eval safety`: refusal rates on AdvBench, HarmBench, MaliciousInstruct, XSTest, and XSTest false refusals."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rtune.cli.options import option, settings
from rtune.evals.safety import SafetyRun as S

console = Console(stderr=True, soft_wrap=True, highlight=False)


def command(
    out: Path = option(S, "out"),
    model: str | None = option(S, "model"),
    outputs: Path | None = option(S, "outputs"),
    sets: str = option(S, "sets"),
    judge: str = option(S, "judge"),
    limit: int | None = option(S, "limit"),
    seed: int = option(S, "seed"),
    data_dir: Path | None = option(S, "data_dir"),
    max_new_tokens: int = option(S, "max_new_tokens"),
    prompt: str = option(S, "prompt"),
    judge_max_new_tokens: int = option(S, "judge_max_new_tokens"),
    judge_retries: int = option(S, "judge_retries"),
    judge_prompt: Path | None = option(S, "judge_prompt"),
    batch_size: int | None = option(S, "batch_size"),
    timeout: float = option(S, "timeout", min=0.001),
    max_retries: int = option(S, "max_retries", min=0),
    cache: Path | None = option(S, "cache"),
    hide_examples: bool = option(S, "hide_examples"),
) -> None:
    """Refusal evaluation: generate (or read) answers, judge refusals, report rates with bootstrap CIs."""
    from rtune.evals.safety import SET_TITLES, run
    from rtune.progress import Bar

    run_settings = settings(
        S,
        out=out,
        model=model,
        outputs=outputs,
        sets=sets,
        judge=judge,
        limit=limit,
        seed=seed,
        data_dir=data_dir,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        judge_max_new_tokens=judge_max_new_tokens,
        judge_retries=judge_retries,
        judge_prompt=judge_prompt,
        batch_size=batch_size,
        timeout=timeout,
        max_retries=max_retries,
        cache=cache,
        hide_examples=hide_examples,
    )
    with Bar(console) as bar:
        summary = run(run_settings, bar, say=console.print)
    for name, result in summary.sets.items():
        if result.refusal_rate is not None:
            console.print(
                f"{SET_TITLES[name]}: refusal rate {result.refusal_rate:.3f} "
                f"[{result.ci_low:.3f}, {result.ci_high:.3f}]"
            )
        if (fr := result.false_refusal) is not None:
            console.print(
                f"{SET_TITLES[name]} safe: false-refusal rate {fr.rate:.3f} "
                f"[{fr.ci_low:.3f}, {fr.ci_high:.3f}] (n={fr.n})"
            )
    if summary.average_refusal_rate is not None and len(summary.average_over) > 1:
        console.print(f"average refusal rate over {len(summary.average_over)} sets: {summary.average_refusal_rate:.3f}")
    if summary.unclassified:
        console.print(f"[yellow]{summary.unclassified} judge answers unclassified after retries[/yellow]")
    console.print(f"wrote {out / 'report.md'}, {out / 'summary.json'}, {out / 'results.jsonl'}")
