"""`rtune judge aspects`: JustEval-style 1–5 scores per aspect, with rationales, cached and resumable."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rtune.cli.options import option, settings
from rtune.judges.aspect_summary import Mean
from rtune.judges.aspects import AspectsSettings as S

console = Console(stderr=True, soft_wrap=True, highlight=False)


def _mean_text(stat: Mean | None) -> str:
    if stat is None:
        return "-"
    low, high = stat.ci95
    return f"{stat.mean:.2f} [{low:.2f}, {high:.2f}]" if low is not None else f"{stat.mean:.2f}"


def command(
    outputs: Path = option(S, "outputs"),
    judge: str = option(S, "judge"),
    out: Path = option(S, "out"),
    limit: int | None = option(S, "limit", min=1),
    max_attempts: int = option(S, "max_attempts", min=1),
    max_new_tokens: int = option(S, "max_new_tokens", min=16),
    safety_category: str = option(S, "safety_category"),
    template: Path | None = option(S, "template"),
    safety_template: Path | None = option(S, "safety_template"),
    system_prompt: str | None = option(S, "system_prompt"),
    max_concurrency: int = option(S, "max_concurrency", min=1),
    batch_size: int | None = option(S, "batch_size", min=1),
    api_key_env: str | None = option(S, "api_key_env"),
    timeout: float = option(S, "timeout", min=0.001),
    max_retries: int = option(S, "max_retries", min=0),
    seed: int = option(S, "seed"),
) -> None:
    """Score each output on helpfulness, clarity, factuality, depth and engagement (safety items: safety)."""
    values = dict(locals())
    from rtune.judges.aspects import run
    from rtune.progress import Bar

    chosen = settings(S, **values)
    with Bar(console) as bar:
        report = run(chosen, bar)
    groups = report.by_category
    for category, group in groups.items():
        if category == "all" and len(groups) == 2:
            continue  # one category: "all" would repeat it
        if not group.aspects:
            console.print(f"{category}: no item could be scored")
            continue
        parts = [f"{name} {_mean_text(stat)}" for name, stat in group.aspects.items()]
        overall = f"; overall {_mean_text(group.overall)}" if group.overall is not None else ""
        console.print(f"{category} (n={group.n}): " + ", ".join(parts) + overall)
    if report.failures:
        console.print(
            f"[yellow]{report.n_failed} items gave no readable answer after {max_attempts} tries; "
            "excluded from the means (rerun to try them again)[/yellow]"
        )
    console.print(f"judge: {report.usage.describe()}")
    console.print(
        f"wrote {report.scores_file} ({report.n_scored} items, {report.n_resumed} from an earlier run) "
        f"and {report.summary_file}"
    )
