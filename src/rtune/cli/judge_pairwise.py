"""`rtune judge pairwise`: AlpacaEval-style preferences of a model's outputs over reference outputs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rtune.cli.options import option, settings
from rtune.judges.pairwise import PairwiseSettings as S

console = Console(stderr=True, soft_wrap=True, highlight=False)


def _percent(value: float | None, error: float | None = None) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.2f}" + (f" ± {error:.2f}" if error is not None and error == error else "")


def command(
    outputs: Path = option(S, "outputs"),
    reference: Path = option(S, "reference"),
    judge: str = option(S, "judge"),
    out: Path = option(S, "out"),
    annotator: str | None = option(S, "annotator"),
    mode: str = option(S, "mode"),
    seed: int = option(S, "seed"),
    limit: int | None = option(S, "limit", min=1),
    max_attempts: int = option(S, "max_attempts", min=1),
    top_logprobs: int = option(S, "top_logprobs", min=2, max=20),
    max_concurrency: int = option(S, "max_concurrency", min=1),
    batch_size: int | None = option(S, "batch_size", min=1),
    api_key_env: str | None = option(S, "api_key_env"),
    timeout: float = option(S, "timeout", min=0.001),
    max_retries: int = option(S, "max_retries", min=0),
    length_controlled: bool = option(S, "length_controlled", "--lc/--no-lc"),
) -> None:
    """Ask a judge which output is better for each instruction both files share; write AlpacaEval files."""
    values = dict(locals())
    from rtune.judges.alpaca_eval_annotator import INSTALL, installed_version
    from rtune.judges.pairwise import run
    from rtune.progress import Bar

    chosen = settings(S, **values)
    if annotator is None and installed_version() is None:
        console.print(f"annotator: rtune's own; for AlpacaEval 2's (the paper's): {INSTALL}")
    with Bar(console) as bar:
        report = run(chosen, bar)
    m = report.metrics
    console.print(
        f"{report.n_compared} instructions to compare; {report.only_in_outputs} only in {outputs.name}, "
        f"{report.only_in_reference} only in {reference.name} (skipped)"
    )
    lc = _percent(m.length_controlled_winrate, m.lc_standard_error) + (f" ({m.lc_note})" if m.lc_note else "")
    console.print(
        f"{m.generator or 'model'} vs {m.baseline or 'reference'}: win rate "
        f"{_percent(m.win_rate, m.standard_error)}, LC win rate {lc}, n={m.n}"
    )
    if report.failures:
        console.print(
            f"[yellow]{report.n_failed} comparisons gave no readable answer after {max_attempts} tries; "
            "stored with preference null and left out of the win rate (rerun to try them again)[/yellow]"
        )
    console.print(f"judge: {report.usage.describe()}")
    console.print(
        f"wrote {report.annotations_file} ({report.n_annotated} annotated, {report.n_resumed} from an "
        f"earlier run), {report.leaderboard_file}, {report.run_file}"
    )
