"""`rtune train` end to end: check inputs, resume or start, train, export.

A run directory holds one run. Its `train_config.yaml` records every setting plus what was
resolved (model fingerprint, data sha256, precision, versions); its identity is the hash of the
settings that change the result. Rerunning the same command continues from the last complete
checkpoint (bitwise the same result as an uninterrupted run); different settings in the same
directory are an error; a finished run is not trained again.
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import yaml

from rtune.errors import RtuneError
from rtune.io import (
    atomic_write_json,
    atomic_write_text,
    check_output,
    read_json,
    read_jsonl,
    sha256_file,
    stable_hash,
    write_jsonl,
)
from rtune.training.config import TrainConfig

# Settings that change how a run is logged or saved, not what it learns. (`model` and `data` enter the
# identity as their content hashes, so naming the same files differently is still the same run.)
RESULT_NEUTRAL = ("save_steps", "save_total_limit", "logging_steps", "check_memory", "eos_probe", "eos_probe_tokens")
VERSIONED_PACKAGES = ("rtune", "torch", "transformers", "peft", "accelerate", "trl", "bitsandbytes", "tokenizers")


@dataclass
class TrainResult:
    out_dir: str
    merged_dir: str
    adapter_dir: str | None
    steps: int
    resumed_from_step: int | None
    already_complete: bool
    final_loss: float | None  # the last logged training loss


class RunDir:
    def __init__(self, root: Path):
        self.root = root
        self.config = root / "train_config.yaml"
        self.checkpoints = root / "checkpoints"
        self.metrics = root / "metrics.jsonl"
        self.summary = root / "train_summary.json"
        self.adapter = root / "adapter"
        self.merged = root / "merged"
        self.tensorboard = root / "tensorboard"
        self.loss_curve = root / "loss_curve.png"

    def saved_record(self) -> dict | None:
        if not self.config.exists():
            return None
        record = yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        if "identity" not in record:
            raise RtuneError(f"{self.config}: not an rtune training record (no identity); use another --out")
        return record

    def checkpoints_by_step(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.checkpoints.glob("checkpoint-*"):
            suffix = path.name.split("-", 1)[1]
            if path.is_dir() and suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def last_complete_checkpoint(self, world_size: int, remove_incomplete: bool) -> tuple[int, Path] | None:
        from rtune.training.trainer import checkpoint_complete

        last = None
        for step, path in self.checkpoints_by_step():
            if checkpoint_complete(path, world_size):
                last = (step, path)
            elif remove_incomplete:
                shutil.rmtree(path, ignore_errors=True)  # cut short by a crash; the Trainer would resume from it
        return last

    def keep_metrics_up_to(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (those steps are redone)."""
        if self.metrics.exists():
            rows = read_jsonl(self.metrics, tolerate_truncated_tail=True)
            write_jsonl(self.metrics, [row for row in rows if row.get("step", 0) <= step])


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def identity_of(config: TrainConfig, resolved: dict) -> dict:
    settings = {k: v for k, v in config.model_dump().items() if k not in RESULT_NEUTRAL and k not in ("data", "model")}
    return {
        **settings,
        "data_sha256": resolved["data_sha256"],
        "model_fingerprint": resolved["model_fingerprint"],
        "world_size": resolved["world_size"],
    }


def _differences(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed[:6]) + (" …" if len(changed) > 6 else "")


def _required(config: TrainConfig) -> TrainConfig:
    missing = [name for name in ("method", "model", "data") if getattr(config, name) is None]
    if missing:
        raise RtuneError(
            f"missing {', '.join('--' + m for m in missing)} (give them on the command line or in --config)"
        )
    if not Path(config.data).is_file():
        raise RtuneError(f"{config.data}: no such data file")
    return config


def training_arguments(config: TrainConfig, run: RunDir, bf16: bool, on_cpu: bool, world_size: int):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        optim=config.optimizer,
        max_grad_norm=config.max_grad_norm,
        bf16=bf16,
        use_cpu=on_cpu,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_backend="gloo" if on_cpu and world_size > 1 else None,
        ddp_find_unused_parameters=False,
    )


def _say(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]rtune[/cyan] {message}", highlight=False)


def _result(run: RunDir, summary: dict, already_complete: bool) -> TrainResult:
    """Paths from where the run folder is now: a pipeline stage renames it into place after training."""
    adapter = summary.get("adapter", summary.get("adapter_dir"))  # adapter_dir: summaries that held paths
    return TrainResult(
        str(run.root),
        str(run.merged),
        str(run.adapter) if adapter else None,
        summary["steps"],
        summary["resumed_from_step"],
        already_complete,
        summary["final_loss"],
    )


def _finished(run: RunDir) -> TrainResult:
    return _result(run, read_json(run.summary), already_complete=True)


def _check_run_dir(run: RunDir, identity: dict) -> dict | None:
    """The saved record when `run` holds this same run, None when it is new; an error for anything else."""
    saved = run.saved_record()
    if saved is None:
        strangers = (
            sorted(p.name for p in run.root.iterdir() if not p.name.startswith(".")) if run.root.is_dir() else []
        )
        if strangers:
            raise RtuneError(
                f"{run.root} is not empty ({', '.join(strangers[:3])}…) and holds no rtune run; use another --out"
            )
        return None
    if saved["identity"]["hash"] != stable_hash(identity):
        raise RtuneError(
            f"{run.root} already holds a run with other settings "
            f"({_differences(saved['identity']['settings'], identity)}); "
            "use another --out, or delete that directory to start over"
        )
    return saved


def _data_report(report, loaded) -> dict:
    return {
        **asdict(report),
        "dropped_no_supervision": len(report.dropped_no_supervision),
        "skipped_empty_completion": loaded.skipped_empty_completion,
        "skipped_empty_prompt": loaded.skipped_empty_prompt,
    }


def train(config: TrainConfig, out_dir: str | Path, callbacks: tuple = ()) -> TrainResult:
    """Train (or resume, or recognise as done) the run in `out_dir`; extra Trainer `callbacks` are for tests
    and tools."""
    import os

    from accelerate import PartialState

    from rtune.models import load_tokenizer, model_fingerprint, prepare_model, resolve_device
    from rtune.training.data import build_dataset, load_training_records
    from rtune.training.model import (
        available_memory,
        check_memory,
        count_params,
        estimate_memory,
        resolve_precision,
    )

    config = _required(config)
    run = RunDir(check_output(out_dir, inputs=[config.data], directory=True))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device()
    precision = resolve_precision(config.precision, device)
    args = training_arguments(config, run, precision.bf16, device == "cpu", world_size)  # sets up the process group
    state = PartialState()
    main = state.is_main_process

    model_path = prepare_model(config.model)
    resolved = {
        "model_path": model_path,
        "model_fingerprint": model_fingerprint(model_path),
        "data_path": str(Path(config.data).resolve()),
        "data_sha256": sha256_file(config.data),
        "world_size": world_size,
        "device": device,
        "precision": "bf16" if precision.bf16 else "fp32",
        "precision_reason": precision.reason,
    }
    identity = identity_of(config, resolved)
    saved = _check_run_dir(run, identity)
    if run.summary.exists():
        return _finished(run)

    tokenizer = load_tokenizer(model_path)
    loaded = load_training_records(config.data, config.method)
    dataset, report = build_dataset(loaded.records, tokenizer, config.method, config.max_length, config.data)
    resolved["data"] = _data_report(report, loaded)
    if config.check_memory:
        free, what = available_memory(device)
        sharing = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if device == "cpu" else 1  # CPU processes share the RAM
        check_memory(estimate_memory(count_params(model_path, config), config, precision), free, what, config, sharing)

    resume = run.last_complete_checkpoint(world_size, remove_incomplete=main)
    state.wait_for_everyone()
    if main:
        if saved is None:
            record = {
                "identity": {"hash": stable_hash(identity), "settings": identity},
                "settings": config.model_dump(),
                "resolved": resolved,
                "versions": versions(),
            }
            run.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.config, yaml.safe_dump(json.loads(json.dumps(record, default=str)), sort_keys=False))
        run.keep_metrics_up_to(resume[0] if resume else 0)
    state.wait_for_everyone()
    _say(
        f"{config.method.upper()} · {config.peft} · {report.examples} examples, {report.tokens:,} tokens "
        f"({report.supervised_tokens:,} supervised; {report.truncated} truncated at {config.max_length}) · "
        f"{resolved['precision']} ({precision.reason})" + (f" · resuming from step {resume[0]}" if resume else "")
    )

    trainer = _build_trainer(config, args, run, model_path, dataset, tokenizer, precision, state, callbacks)
    trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    state.wait_for_everyone()
    logged = (
        [row for row in read_jsonl(run.metrics, tolerate_truncated_tail=True) if "loss" in row]
        if main and run.metrics.exists()
        else []
    )
    summary = {
        "steps": trainer.state.global_step,
        "resumed_from_step": resume[0] if resume else None,
        "final_loss": logged[-1]["loss"] if logged else None,
        "adapter": config.peft != "none",
    }
    if main:
        _export(config, run, trainer, tokenizer, model_path)
        atomic_write_json(run.summary, summary)
    state.wait_for_everyone()
    return _result(run, summary, already_complete=False)


def _build_trainer(config, args, run, model_path, dataset, tokenizer, precision, state, callbacks):
    from accelerate.utils import DistributedType
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback

    from rtune.training.data import LengthGroupedShuffleSampler, PaddingCollator
    from rtune.training.model import load_for_training
    from rtune.training.trainer import (
        CheckpointPolicy,
        MetricsLog,
        RichProgress,
        RtuneTrainer,
        TokenMeter,
        causal_lm_of,
        supervised_head_blocker,
    )

    device_map = {"": state.device} if state.device.type != "cpu" else None
    model = load_for_training(model_path, config, precision, device_map=device_map)
    use_head = config.supervised_head
    if use_head:
        blocker = supervised_head_blocker(causal_lm_of(model))
        if state.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            blocker = "FSDP/DeepSpeed shard the LM head weight"
        if blocker:
            _say(f"computing full logits: {blocker}")
            use_head = False
    meter = TokenMeter()
    extra = [CheckpointPolicy(), MetricsLog(run.metrics, meter), RichProgress()]
    if config.eos_probe:
        from rtune.training.eos_probe import EosProbe

        extra.insert(0, EosProbe(run.metrics, tokenizer, config.eos_probe, config.eos_probe_tokens))
    if state.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        resume_step = max((step for step, _ in run.checkpoints_by_step()), default=0)
        extra.append(TensorBoardCallback(SummaryWriter(str(run.tensorboard), purge_step=resume_step or None)))
    trainer = RtuneTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=PaddingCollator(tokenizer.pad_token_id),
        sampler=LengthGroupedShuffleSampler(dataset.lengths, config.batch_size, config.seed, config.group_by_length),
        supervised_head=use_head,
        meter=meter,
        loss_normalization=config.loss_normalization,
        callbacks=[*extra, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def _export(config: TrainConfig, run: RunDir, trainer, tokenizer, base_path: str) -> None:
    from rtune.training.export import plot_loss_curve, save_adapter, save_full_model, save_merged_from_adapter

    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.peft == "none":
        save_full_model(model, tokenizer, run.merged)
    else:
        save_adapter(model, tokenizer, run.adapter)
        save_merged_from_adapter(base_path, run.adapter, tokenizer, run.merged)
    plot_loss_curve(
        run.metrics, run.loss_curve, f"{config.method.upper()} · {Path(str(config.model)).name} · {config.peft}"
    )
