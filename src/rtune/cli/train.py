"""`rtune train`: instruction tuning (IT) or response tuning (RT) with LoRA, QLoRA or full fine-tuning."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    method: str | None = typer.Option(None, "--method", help="it (prompt + response) or rt (response only)."),
    model: str | None = typer.Option(
        None, "--model", help="Registered name (gemma-3-270m), local folder, .gguf or hub id."
    ),
    data: Path | None = typer.Option(None, "--data", help="Record JSONL from `rtune data build`."),
    out: Path = typer.Option(
        ..., "--out", help="Run directory: adapter/, merged/, checkpoints, logs. Rerun to resume."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML recipe (e.g. configs/paper_qlora.yaml); flags override it."
    ),
    peft: str | None = typer.Option(None, "--peft", help="qlora, lora or none (full fine-tuning)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop after N optimizer steps (overrides --epochs)."
    ),
    max_length: int | None = typer.Option(None, "--max-length", min=8, help="Truncate examples to N tokens."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Examples per device per micro-batch."),
    grad_accum: int | None = typer.Option(None, "--grad-accum", min=1, help="Micro-batches per optimizer step."),
    lora_r: int | None = typer.Option(None, "--lora-r", min=1),
    lora_alpha: float | None = typer.Option(None, "--lora-alpha"),
    precision: str | None = typer.Option(None, "--precision", help="auto, bf16 or fp32."),
    save_steps: int | None = typer.Option(
        None, "--save-steps", min=1, help="Checkpoint every N steps (and each epoch)."
    ),
    seed: int | None = typer.Option(None, "--seed"),
    no_memory_check: bool = typer.Option(
        False, "--no-memory-check", help="Start even if the memory estimate says it won't fit."
    ),
) -> None:
    """Fine-tune a model on records; rerunning the same command resumes an interrupted run."""
    from transformers.utils import logging as transformers_logging

    from rtune.training import train
    from rtune.training.config import load_train_config

    transformers_logging.disable_progress_bar()  # weight loading bars; training has its own progress line

    overrides = {
        "method": method,
        "model": model,
        "data": str(data) if data else None,
        "peft": peft,
        "epochs": epochs,
        "learning_rate": lr,
        "max_steps": max_steps,
        "max_length": max_length,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "precision": precision,
        "save_steps": save_steps,
        "seed": seed,
        "check_memory": False if no_memory_check else None,
    }
    result = train(load_train_config(config, overrides), out)
    if result.already_complete:
        print(f"already trained ({result.steps} steps); nothing to do")
    print(result.merged_dir)
