"""`rtune eval core`: MMLU, ARC-Easy/Challenge, HellaSwag, OpenBookQA, PIQA and GSM8K, lm-eval compatible output."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True)


class _RichProgress:
    """One bar per task, fed by the evaluator."""

    def __init__(self, progress):
        self.progress, self.task = progress, None

    def start(self, label: str, total: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


def _summary(document: dict) -> str:
    lines = []
    for name, metrics in document["results"].items():
        if name.startswith("mmlu_") and name not in document.get("groups", {}):
            continue  # subjects are in the file; the summary shows tasks and MMLU groups
        shown = []
        for key in ("acc", "acc_norm", "exact_match", "exact_match_flexible-extract"):
            if metrics.get(key) is not None:
                stderr = metrics.get(f"{key}_stderr")
                shown.append(f"{key} {metrics[key]:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else ""))
        lines.append(f"  {name:<22} " + "  ".join(shown))
    return "\n".join(lines)


def command(
    model: str = typer.Option(..., "--model", help="Registered name (gemma-3-270m), model folder, .gguf file or hub id."),
    tasks: str = typer.Option("mmlu,arc_easy,arc_challenge,hellaswag,openbookqa,piqa,gsm8k", "--tasks",
                              help="Comma-separated: mmlu, arc_easy, arc_challenge, hellaswag, openbookqa, piqa, gsm8k, or 'all'."),
    out: Path = typer.Option(..., "--out", help="Results JSON (lm-eval shape); samples go to <out stem>_samples.jsonl."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local datasets (default: $RTUNE_DATA_DIR, else the hub)."),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", min=0,
                                              help="Shots from the dev split where one exists (MMLU); GSM8K takes the first N of its 8 exemplars. Default: 0, GSM8K 8."),
    chat_template: Optional[bool] = typer.Option(None, "--chat-template/--no-chat-template",
                                                 help="Wrap questions in the chat template (Tulu when the model has none), like lm-eval --apply_chat_template. Default: when the tokenizer has one."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="First N items per task (per MMLU subject)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Contexts per forward pass (prompts per batch for GSM8K)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 (exact), bfloat16 or float16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    seed: int = typer.Option(0, "--seed"),
    engine: str = typer.Option("builtin", "--engine", help="builtin (local files, context computed once) or lm-eval (optional extra; hub)."),
) -> None:
    """Core capabilities by choice log-likelihood (acc, acc_norm) and GSM8K chain of thought; reruns skip finished tasks."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from rtune.errors import RtuneError
    from rtune.evals.core import CoreEvalSettings, run_core_eval, samples_path
    from rtune.evals.core_tasks import parse_tasks

    try:
        settings = CoreEvalSettings(model=model, tasks=tuple(parse_tasks(tasks)), data_dir=str(data_dir) if data_dir else None,
                                    num_fewshot=num_fewshot, chat_template=chat_template, limit=limit, batch_size=batch_size,
                                    dtype=dtype, device=device, seed=seed, engine=engine)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise RtuneError(problems) from None
    columns = (TextColumn("[cyan]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        document = run_core_eval(settings, out, progress=_RichProgress(progress))
    mode = "chat template" if document["config"].get("chat_template") else "plain prompts"
    console.print(f"{engine} engine, {mode}, {document.get('total_evaluation_time_seconds')} s", highlight=False)
    console.print(_summary(document), highlight=False, soft_wrap=True)
    zero_shot = [name for name, shots in document.get("n-shot", {}).items() if num_fewshot and shots == 0 and not name.startswith("mmlu")]
    if zero_shot:
        console.print(f"note: {', '.join(zero_shot)} ran zero-shot (no few-shot split in the local data)", highlight=False)
    console.print(f"wrote {out} and {samples_path(out)}", highlight=False, soft_wrap=True)
