"""What a finished run leaves behind: the adapter, a merged plain HF model, and a loss curve.

Folders are written under a `.partial` name and renamed when complete, so a crash during export
never leaves a folder that looks finished; rerunning the same command redoes the export.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from rtune.io import read_jsonl
from rtune.templates import TULU_CHAT_TEMPLATE


def write_folder(target: Path, write: Callable[[Path], None]) -> Path:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def with_chat_template(tokenizer):
    """The paper's Tulu template, so `apply_chat_template(..., add_generation_prompt=True)` gives the
    inference prompt."""
    tokenizer.chat_template = TULU_CHAT_TEMPLATE
    return tokenizer


def save_adapter(model, tokenizer, target: Path) -> Path:
    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        with_chat_template(tokenizer).save_pretrained(folder)

    return write_folder(target, write)


def save_merged_from_adapter(base_path: str, adapter_dir: Path, tokenizer, target: Path) -> Path:
    """Fold the LoRA weights into the *unquantized* base (as the paper does after QLoRA) and save a plain model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    def write(folder: Path) -> None:
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.config.use_cache = True
        merged.save_pretrained(folder)
        with_chat_template(tokenizer).save_pretrained(folder)

    return write_folder(target, write)


def save_full_model(model, tokenizer, target: Path) -> Path:
    def write(folder: Path) -> None:
        model.config.use_cache = True
        model.save_pretrained(folder)
        with_chat_template(tokenizer).save_pretrained(folder)

    return write_folder(target, write)


def plot_loss_curve(metrics_path: Path, target: Path, title: str) -> Path | None:
    """Training loss per logged step (PNG); None when nothing was logged."""
    if not metrics_path.exists():
        return None
    rows = [row for row in read_jsonl(metrics_path, tolerate_truncated_tail=True) if row.get("loss") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot([row["step"] for row in rows], [row["loss"] for row in rows], marker="." if len(rows) < 60 else None)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss (supervised tokens)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    partial = target.with_name(target.stem + ".partial.png")
    figure.savefig(partial, dpi=120)
    plt.close(figure)
    partial.replace(target)
    return target
