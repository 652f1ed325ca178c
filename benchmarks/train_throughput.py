"""Training throughput of `rtune train` against TRL's plain SFTTrainer, side by side in one run.

Same model, same LIMA examples, same LoRA (r=16, alpha=32, dropout 0.05, all linear layers), same batch
size and maximum length. TRL gets the data as prompt-completion pairs (its completion-only loss), with
its defaults otherwise (gradient checkpointing on); its precision is matched to rtune's unless
`--trl-precision default` (TRL's default bf16 autocast, which is slow on CPUs without native bf16).
The first optimizer step of each run is warm-up and not timed.

    nice python benchmarks/train_throughput.py --steps 3                 # gemma-3-270m, 64 LIMA, RT and IT
    nice python benchmarks/train_throughput.py --steps 2 --methods rt

Tokens are real (non-padding) tokens of the batches; supervised tokens are those carrying the loss.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback


@dataclass
class Throughput:
    trainer: str
    method: str
    steps: int
    seconds: float
    cpu_seconds: float  # process CPU time: steadier than wall time on a machine shared with other jobs
    tokens: float
    supervised: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def supervised_per_s(self) -> float:
        return self.supervised / self.seconds


class StepClock(TrainerCallback):
    """Wall and CPU time at the end of every optimizer step."""

    def __init__(self):
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())
        return control


def _timed(clock: StepClock, per_step: list[tuple[float, float]], trainer: str, method: str) -> Throughput:
    """Steps 2..N: the first one pays for warm-up (allocation, first-touch of the weights)."""
    timed = per_step[1 : len(clock.ends)]
    return Throughput(
        trainer,
        method,
        len(timed),
        clock.ends[-1] - clock.ends[0],
        clock.cpu_ends[-1] - clock.cpu_ends[0],
        sum(t for t, _ in timed),
        sum(s for _, s in timed),
    )


def run_rtune(records_path: Path, model: str, method: str, args, work: Path) -> Throughput:
    from rtune.io import read_jsonl
    from rtune.training import train
    from rtune.training.config import TrainConfig

    config = TrainConfig(
        method=method,
        model=model,
        data=str(records_path),
        peft="lora",
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.05,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.steps + 1,
        learning_rate=2e-4,
        save_steps=10_000,
        seed=0,
    )
    clock = StepClock()
    out = work / f"rtune-{method}"
    train(config, out, callbacks=(clock,))
    rows = read_jsonl(out / "metrics.jsonl")
    return _timed(clock, [(row["tokens"], row["supervised_tokens"]) for row in rows], "rtune", method)


class CountingCollator:
    """Wraps TRL's collator to record (tokens, supervised tokens) of every batch it builds."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[tuple[float, float]] = []

    def __call__(self, features):
        batch = self.inner(features)
        supervised = (batch["labels"][:, 1:] != -100).sum()
        self.batches.append((float(batch["attention_mask"].sum()), float(supervised)))
        return batch


def run_trl(records, model_path: str, method: str, args, bf16: bool | None, work: Path) -> Throughput:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from rtune.templates import ASSISTANT_MARKER, USER_MARKER

    def head(prompt: str) -> str:
        return f"{USER_MARKER}{prompt}\n{ASSISTANT_MARKER}" if method == "it" else ASSISTANT_MARKER

    dataset = Dataset.from_list([{"prompt": head(r.prompt), "completion": r.completion} for r in records])
    config = SFTConfig(
        output_dir=str(work / f"trl-{method}"),
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.steps + 1,
        learning_rate=2e-4,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        use_cpu=not torch.cuda.is_available(),  # else TRL's default bf16 refuses to start on a CPU
        **({} if bf16 is None else {"bf16": bf16}),
        **(
            {}
            if args.trl_gradient_checkpointing is None
            else {"gradient_checkpointing": args.trl_gradient_checkpointing}
        ),
    )
    lora = LoraConfig(
        r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(model=model_path, args=config, train_dataset=dataset, peft_config=lora)
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    clock = StepClock()
    trainer.add_callback(clock)
    trainer.train()
    return _timed(clock, counter.batches, "trl", method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--data-dir", default=None, help="holds lima/ (default: $RTUNE_DATA_DIR)")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run (after one warm-up step)")
    parser.add_argument("--methods", default="rt,it")
    parser.add_argument("--trl-precision", choices=["match", "default"], default="match")
    parser.add_argument(
        "--trl-gradient-checkpointing",
        type=lambda s: s.lower() in ("1", "true", "yes"),
        default=None,
        help="override TRL's default (true)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import os

    from rtune.data.records import write_records
    from rtune.data.sources import build_records
    from rtune.models import prepare_model
    from rtune.training.model import device_type, resolve_precision

    data_dir = args.data_dir or os.environ.get("RTUNE_DATA_DIR")
    if not data_dir:
        parser.error("give --data-dir (a folder holding lima/lima.json) or set RTUNE_DATA_DIR")
    records = build_records("lima", data_dir, max_examples=args.examples, seed=0).records
    model_path = prepare_model(args.model)
    ours_bf16 = resolve_precision("auto", device_type()).bf16
    trl_bf16 = ours_bf16 if args.trl_precision == "match" else None
    results: list[Throughput] = []
    with tempfile.TemporaryDirectory(prefix="rtune-bench-") as tmp:
        work = Path(tmp)
        records_path = work / "lima.jsonl"
        write_records(records_path, records)
        for method in args.methods.split(","):
            results.append(run_rtune(records_path, model_path, method, args, work))
            results.append(run_trl(records, model_path, method, args, trl_bf16, work))

    print(
        f"\n{args.model} · LoRA r={args.lora_r} all-linear · batch {args.batch_size} · max length {args.max_length} · "
        f"{args.examples} LIMA examples · {args.steps} timed steps · "
        f"precision rtune={'bf16' if ours_bf16 else 'fp32'}, "
        f"trl={'default (bf16)' if trl_bf16 is None else ('bf16' if trl_bf16 else 'fp32')}"
    )
    print(
        f"{'method':6} {'trainer':7} {'tokens/s':>10} {'supervised/s':>13} {'s/step':>8} "
        f"{'tokens/cpu-s':>13} {'cpu-s/step':>11}"
    )
    for r in results:
        print(
            f"{r.method:6} {r.trainer:7} {r.tokens_per_s:10.1f} {r.supervised_per_s:13.1f} {r.seconds / r.steps:8.1f} "
            f"{r.tokens / r.cpu_seconds:13.1f} {r.cpu_seconds / r.steps:11.1f}"
        )
    for method in args.methods.split(","):
        ours, trl = (next(r for r in results if r.method == method and r.trainer == t) for t in ("rtune", "trl"))
        print(
            f"{method}: rtune / TRL = {ours.tokens_per_s / trl.tokens_per_s:.2f}x tokens/s, "
            f"{ours.supervised_per_s / trl.supervised_per_s:.2f}x supervised tokens/s (wall); "
            f"{(ours.tokens / ours.cpu_seconds) / (trl.tokens / trl.cpu_seconds):.2f}x tokens per CPU second"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {**r.__dict__, "tokens_per_s": r.tokens_per_s, "supervised_per_s": r.supervised_per_s}
                    for r in results
                ],
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
