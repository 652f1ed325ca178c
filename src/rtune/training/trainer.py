"""A transformers Trainer with our sampler and loss, and the callbacks that checkpoint, log and show progress.

Why `transformers.Trainer` and not TRL's `SFTTrainer`: the data arrive already tokenized with span
labels (rtune.templates), so SFTTrainer's dataset preparation and collators have nothing to do,
while its loss path scores every position and adds entropy/accuracy metrics over the full
vocabulary, which is the cost we remove. Trainer still gives us accelerate (DDP/FSDP/DeepSpeed),
checkpoints with optimizer and RNG state, and exact resume.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from rtune.io import append_jsonl
from rtune.templates import IGNORE_INDEX
from rtune.training.loss import capture_output, full_logits_cross_entropy_sum, supervised_cross_entropy_sum

COMPLETE_MARKER = "rtune-complete-rank{rank}"


def causal_lm_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers CausalLM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supervised_head_blocker(causal_lm: torch.nn.Module) -> str | None:
    """Why the supervised-only LM head cannot reproduce this model's logits, or None when it can."""
    head = causal_lm.get_output_embeddings()
    if head is None or not isinstance(head, torch.nn.Linear):
        return "the model has no plain linear LM head"
    if head.bias is not None:
        return "the LM head has a bias"
    text = causal_lm.config.get_text_config()
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(text, name, None) not in (None, 1, 1.0):
            return f"the model scales its logits ({name})"
    if "logits_to_keep" not in inspect.signature(causal_lm.forward).parameters:
        return "the model's forward has no logits_to_keep"
    return None


class TokenMeter:
    """Tokens seen by this process since the last reading (all tokens and supervised ones)."""

    def __init__(self):
        self.tokens = 0
        self.supervised = 0
        self.since = time.perf_counter()

    def add(self, tokens: int, supervised: int) -> None:
        self.tokens += tokens
        self.supervised += supervised

    def read(self) -> tuple[float, float, float]:
        """(tokens, supervised tokens, seconds) summed over processes, then reset."""
        counts = torch.tensor([self.tokens, self.supervised], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.to("cpu" if torch.distributed.get_backend() == "gloo" else "cuda")
            torch.distributed.all_reduce(counts)
        now = time.perf_counter()
        seconds, self.since = now - self.since, now
        self.tokens = self.supervised = 0
        return float(counts[0]), float(counts[1]), seconds


class RtuneTrainer(Trainer):
    """Trainer whose loss is normalised as `normalised_loss` says, computed at supervised positions only
    when possible."""

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args,
        sampler,
        supervised_head: bool,
        meter: TokenMeter,
        loss_normalization: str = "batch_tokens",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self._rtune_sampler = sampler
        self.loss_normalization = loss_normalization
        self.supervised_head = supervised_head
        self.meter = meter
        self.model_accepts_loss_kwargs = True  # makes Trainer count the supervised tokens per optimizer step

    def _get_train_sampler(self, train_dataset=None):
        return self._rtune_sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, attention_mask = inputs["labels"], inputs["attention_mask"]
        forward_inputs = {"input_ids": inputs["input_ids"], "attention_mask": attention_mask, "use_cache": False}
        if self.supervised_head:
            causal_lm = causal_lm_of(self.accelerator.unwrap_model(model))
            with capture_output(causal_lm.base_model) as seen:
                outputs = model(**forward_inputs, logits_to_keep=1)
            hidden = seen[-1].last_hidden_state if hasattr(seen[-1], "last_hidden_state") else seen[-1][0]
            softcap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
            loss_sum = supervised_cross_entropy_sum(hidden, labels, causal_lm.get_output_embeddings().weight, softcap)
        else:
            outputs = model(**forward_inputs)
            loss_sum = full_logits_cross_entropy_sum(outputs.logits, labels)
        n_supervised = (labels[:, 1:] != IGNORE_INDEX).sum()
        self.meter.add(int(attention_mask.sum()), int(n_supervised))
        devices = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        loss = normalised_loss(
            loss_sum,
            n_supervised,
            num_items_in_batch,
            self.loss_normalization,
            self.args.gradient_accumulation_steps,
            devices,
        )
        return (loss, outputs) if return_outputs else loss


def normalised_loss(loss_sum, n_supervised, num_items_in_batch, mode: str, grad_accum: int, devices: int):
    """The loss one micro-batch backpropagates, already scaled for gradient accumulation.

    `batch_tokens`: the summed token loss over the supervised tokens of the whole accumulated (and,
    when `devices` > 1, global) batch, so every supervised token weighs the same; DDP then averages
    the processes' gradients, hence the factor `devices`. `micro_batch`: each micro-batch's own token
    mean, divided by the accumulation steps (HF Trainer before 4.46, which the paper used), so a
    micro-batch of short responses weighs as much as one of long responses.
    """
    if mode == "micro_batch" or num_items_in_batch is None:
        return loss_sum / n_supervised.clamp(min=1) / (grad_accum if mode == "micro_batch" else 1)
    return loss_sum / num_items_in_batch * devices


def checkpoint_complete(path: Path, world_size: int) -> bool:
    return all((path / COMPLETE_MARKER.format(rank=rank)).exists() for rank in range(world_size))


class CheckpointPolicy(TrainerCallback):
    """Checkpoint every `save_steps`, at each epoch end and at the last step; mark each one complete.

    A checkpoint counts for resume only once every process has written its marker after the
    Trainer finished saving, so a kill during a save never leaves a half-written one in use.
    """

    def __init__(self):
        self.last_saved_step: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        # Saving the same step twice would rewrite a folder that is already marked complete.
        if state.global_step != self.last_saved_step:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_saved_step = state.global_step
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        marker = folder / COMPLETE_MARKER.format(rank=args.process_index)
        with marker.open("w") as handle:
            handle.write(f"{state.global_step}\n")
            handle.flush()
            os.fsync(handle.fileno())
        return control


class MetricsLog(TrainerCallback):
    """One JSON line per logging step: loss, lr, grad norm, tokens/s (all and supervised)."""

    def __init__(self, path: Path, meter: TokenMeter):
        self.path = path
        self.meter = meter

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return control
        tokens, supervised, seconds = self.meter.read()
        row = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens": tokens,
            "supervised_tokens": supervised,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 2) if seconds else None,
            "supervised_tokens_per_s": round(supervised / seconds, 2) if seconds else None,
        }
        logs["tokens_per_s"], logs["supervised_tokens_per_s"] = row["tokens_per_s"], row["supervised_tokens_per_s"]
        if state.is_world_process_zero:
            append_jsonl(self.path, row)
        return control


class RichProgress(TrainerCallback):
    """A progress bar with ETA, the last loss and tokens/s (main process only)."""

    def __init__(self):
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[cyan]train[/cyan]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, status="")
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            speed = logs.get("tokens_per_s")
            status = f"loss {logs['loss']:.4f}" + (f" · {speed:,.0f} tok/s" if speed else "")
            self.progress.update(self.task, status=status)
            if not self.progress.console.is_terminal:  # a log file gets one line per logging step instead of a live bar
                remaining = self.progress.tasks[0].time_remaining
                eta = f" · eta {remaining / 60:.1f} min" if remaining is not None else ""
                self.progress.console.print(
                    f"step {state.global_step}/{state.max_steps} · {status}{eta}", highlight=False
                )
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        return control
