"""`rtune eval core`: MMLU, ARC-Easy/Challenge, HellaSwag, OpenBookQA, PIQA and GSM8K, lm-eval compatible output."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rtune.cli.options import option, settings
from rtune.evals.core import CoreEvalSettings as S
from rtune.evals.core import run
from rtune.progress import Bar

SHOWN = (
    ("acc", "acc"),
    ("acc_norm", "acc_norm"),
    ("exact_match", "exact_match"),
    ("exact_match_flexible", "exact_match_flexible-extract"),
)  # report field, label


def _summary(report) -> str:
    """One line per task and MMLU group (the subjects are in the file)."""
    lines = []
    for name, scores in report.headline.items():
        shown = []
        for field, label in SHOWN:
            metric = getattr(scores, field)
            if metric is not None:
                stderr = f" ± {metric.stderr:.4f}" if metric.stderr is not None else ""
                shown.append(f"{label} {metric.value:.4f}{stderr}")
        lines.append(f"  {name:<22} " + "  ".join(shown))
    return "\n".join(lines)


def command(
    model: str = option(S, "model"),
    tasks: str = option(S, "tasks"),
    out: Path = option(S, "out"),
    data_dir: Path | None = option(S, "data_dir"),
    num_fewshot: int | None = option(S, "num_fewshot", min=0),
    chat_template: bool | None = option(S, "chat_template", "--chat-template/--no-chat-template"),
    limit: int | None = option(S, "limit", min=1),
    batch_size: int = option(S, "batch_size", min=1),
    dtype: str = option(S, "dtype"),
    device: str = option(S, "device"),
    seed: int = option(S, "seed"),
    engine: str = option(S, "engine"),
    protocol: str | None = option(S, "protocol"),
) -> None:
    """Core capabilities by choice log-likelihood (acc, the paper's headline; acc_norm beside it; ARC-Easy and
    ARC-Challenge also as one ARC) and GSM8K chain of thought; reruns skip finished tasks."""
    chosen = settings(S, **locals())
    console = Console(stderr=True)
    with Bar(console) as bar:
        report = run(chosen, bar)
    mode = "chat template" if report.chat_template else "plain prompts"
    console.print(f"{engine} engine, {report.protocol} protocol, {mode}, {report.seconds} s", highlight=False)
    console.print(_summary(report), highlight=False, soft_wrap=True)
    zero_shot = [
        name for name, shots in report.n_shot.items() if num_fewshot and shots == 0 and not name.startswith("mmlu")
    ]
    if zero_shot:
        console.print(
            f"note: {', '.join(zero_shot)} ran zero-shot (no few-shot split in the local data)", highlight=False
        )
    console.print(f"wrote {report.document} and {report.samples}", highlight=False, soft_wrap=True)
