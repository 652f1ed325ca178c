"""`rtune train` on the tiny model: LoRA/QLoRA/full learn, resume is exact, exports load, DDP runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

from rtune.config import SHIPPED_CONFIGS
from rtune.errors import RtuneError
from rtune.io import read_jsonl
from rtune.models import load_model
from rtune.templates import inference_prompt
from rtune.training import TrainResult, train
from rtune.training.config import TrainConfig, load_train_config
from rtune.training.model import (
    MemoryEstimate,
    check_memory,
    count_params,
    estimate_memory,
    load_for_training,
    resolve_precision,
)


def _config(model_dir, data, **overrides) -> TrainConfig:
    settings = dict(
        method="rt",
        model=str(model_dir),
        data=str(data),
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        learning_rate=1e-2,
        batch_size=2,
        max_length=64,
        epochs=1,
        save_steps=3,
        seed=0,
    )
    return TrainConfig(**{**settings, **overrides})


def _losses(run_dir: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row]


@pytest.mark.parametrize("peft, lr", [("lora", 1e-2), ("qlora", 1e-2), ("none", 3e-3)])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny_model_dir, data_file, tmp_path, peft, lr):
    fixed_batch = tmp_path / "four.jsonl"
    fixed_batch.write_text("".join(data_file.read_text().splitlines(keepends=True)[:4]))
    out = tmp_path / peft
    result = train(
        _config(tiny_model_dir, fixed_batch, peft=peft, learning_rate=lr, batch_size=4, max_steps=6, method="it"), out
    )
    losses = _losses(out)
    assert result.steps == 6 and len(losses) == 6
    assert losses[-1] < 0.95 * losses[0], losses
    assert (out / "merged" / "config.json").exists() and (out / "loss_curve.png").stat().st_size > 0
    assert (out / "adapter" / "adapter_config.json").exists() == (peft != "none")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_qlora_base_is_4bit_on_cpu(tiny_model_dir, data_file):
    import bitsandbytes as bnb

    config = _config(tiny_model_dir, data_file, peft="qlora")
    model = load_for_training(str(tiny_model_dir), config, resolve_precision("auto", "cpu"))
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized)
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())


def test_supervised_head_gives_the_same_loss_as_full_logits_through_peft(tiny_model_dir, data_file, tmp_path):
    rows = []
    for use_head in (True, False):
        out = tmp_path / f"head-{use_head}"
        train(
            _config(
                tiny_model_dir, data_file, supervised_head=use_head, max_steps=2, lora_dropout=0.0, precision="fp32"
            ),
            out,
        )  # exact equality is a float32 claim (a GPU would pick bf16)
        rows.append(read_jsonl(out / "metrics.jsonl"))
    for with_head, without in zip(*rows, strict=False):
        assert abs(with_head["loss"] - without["loss"]) < 1e-5
        assert abs(with_head["grad_norm"] - without["grad_norm"]) < 1e-4 * without["grad_norm"]


class SimulatedCrash(Exception):
    pass


class CrashAfterStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise SimulatedCrash(f"crash after step {self.step}")


@pytest.fixture(scope="module")
def straight_run(tiny_model_dir, data_file, tmp_path_factory) -> tuple[TrainConfig, Path]:
    """Two epochs of 4 steps, checkpoints at 3, 4 (epoch end), 6 and 8, uninterrupted."""
    config = _config(tiny_model_dir, data_file, epochs=2)
    out = tmp_path_factory.mktemp("straight") / "run"
    train(config, out)
    return config, out


def test_resume_after_a_crash_is_bitwise_equal(straight_run, tmp_path):
    config, straight = straight_run
    out = tmp_path / "crashed"
    with pytest.raises(SimulatedCrash):
        train(config, out, callbacks=(CrashAfterStep(7),))
    (out / "checkpoints" / "checkpoint-7").mkdir()  # a save cut short by the crash: no completion markers
    resumed = train(config, out)
    assert resumed.resumed_from_step == 6 and resumed.steps == 8  # mid-epoch: resume skips the batches already seen
    for name in ("adapter/adapter_model.safetensors", "merged/model.safetensors"):
        a, b = load_file(straight / name), load_file(out / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert [row["step"] for row in read_jsonl(out / "metrics.jsonl")] == list(range(1, 9))
    assert _losses(out) == _losses(straight)


def test_a_moved_run_folder_reports_where_it_is_now(straight_run, tmp_path):
    """A pipeline stage trains in `train.partial-<hash>` and renames it into place: no stale paths survive."""
    config, out = straight_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    result = train(config, moved)
    assert result.already_complete and result.steps == 8
    assert (result.out_dir, result.merged_dir, result.adapter_dir) == (
        str(moved),
        str(moved / "merged"),
        str(moved / "adapter"),
    )
    assert str(out) not in (moved / "train_summary.json").read_text()


def test_rerun_is_recognised_and_other_settings_are_refused(straight_run):
    config, out = straight_run
    assert train(config.with_overrides({"save_steps": 100}), out).already_complete  # saving cadence is not identity
    with pytest.raises(RtuneError, match=r"other settings \(learning_rate: 0.01 → 0.02\)"):
        train(config.with_overrides({"learning_rate": 2e-2}), out)


def test_merged_model_reproduces_the_adapter_logits_and_prompt(straight_run):
    config, out = straight_run
    adapter_model, _ = load_model(str(out / "adapter"))
    merged_model, tokenizer = load_model(str(out / "merged"))
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == inference_prompt("Why is the sky blue?")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        merged_logits = merged_model(ids).logits
        assert torch.allclose(adapter_model(ids).logits, merged_logits, atol=1e-5)
        assert not torch.allclose(
            load_model(config.model)[0](ids).logits, merged_logits, atol=1e-3
        )  # training changed it


def test_recipes_validate(tmp_path):
    root = SHIPPED_CONFIGS
    paper = load_train_config(root / "paper_qlora.yaml")
    assert (paper.peft, paper.lora_r, paper.lora_alpha, paper.lora_dropout, paper.optimizer) == (
        "qlora",
        64,
        16,
        0.1,
        "paged_adamw_32bit",
    )
    assert (paper.learning_rate, paper.lr_scheduler, paper.batch_size * paper.grad_accum, paper.max_grad_norm) == (
        1e-4,
        "constant",
        64,
        0.3,
    )
    assert load_train_config(root / "lora_cpu.yaml", {"epochs": 1}).epochs == 1
    typo = tmp_path / "typo.yaml"
    typo.write_text("lora_rank: 8\n")
    with pytest.raises(RtuneError, match="typo.yaml: lora_rank: Extra inputs are not permitted"):
        load_train_config(typo)
    for name in ("multi_gpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        assert "distributed_type" in yaml.safe_load((root / "accelerate" / f"{name}.yaml").read_text())


def test_shipped_recipes_load_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the names resolve inside the installed package
    assert load_train_config("paper_qlora").peft == "qlora"
    assert load_train_config("lora_cpu.yaml").peft == load_train_config(SHIPPED_CONFIGS / "lora_cpu.yaml").peft
    (tmp_path / "lora_cpu.yaml").write_text("epochs: 7\n")  # a file of that name in the working directory wins
    assert load_train_config("lora_cpu.yaml").epochs == 7
    with pytest.raises(RtuneError, match=r"paper_qlra: no such config file.*shipped: lora_cpu, paper_qlora"):
        load_train_config("paper_qlra")


def test_memory_check_says_what_to_change(tiny_model_dir, data_file):
    config = _config(tiny_model_dir, data_file, peft="lora", batch_size=8)
    counts = count_params(str(tiny_model_dir), config)
    model, _ = load_model(str(tiny_model_dir))
    assert counts.total == sum(p.numel() for p in model.parameters())
    estimate = estimate_memory(counts, config, resolve_precision("fp32", "cpu"))
    check_memory(estimate, available=8 * 1024**3, what="available RAM", config=config)  # fits
    with pytest.raises(RtuneError, match=r"does not fit.*--peft qlora.*--batch-size 4 --grad-accum 2.*--max-length"):
        check_memory(MemoryEstimate(40 * 1024**3, 1024**3, 4 * 1024**3), 16 * 1024**3, "available RAM", config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_two_cpu_processes(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "rtune",
        "train",
        "--method",
        "it",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data_file),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--epochs",
        "2",
        "--max-length",
        "64",
        "--lr",
        "1e-2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 4  # 8 examples / (2 per process × 2 processes) × 2 epochs
    assert "world_size: 2" in (out / "train_config.yaml").read_text()
    assert (out / "checkpoints" / "checkpoint-4" / "rng_state_1.pth").exists()
    losses = _losses(out)
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_cli_reports_missing_settings_and_applies_overrides(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rtune.cli import app

    result = CliRunner().invoke(app, ["train", "--model", "m", "--data", "d.jsonl", "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, RtuneError) and "missing --method" in str(result.exception)

    seen = {}

    def fake_train(config, out):
        seen["config"] = config
        return TrainResult(str(out), f"{out}/merged", None, 0, None, False, None)

    monkeypatch.setattr("rtune.training.train", fake_train)
    recipe = SHIPPED_CONFIGS / "lora_cpu.yaml"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--method",
            "rt",
            "--model",
            "m",
            "--data",
            "d.jsonl",
            "--out",
            "o",
            "--config",
            str(recipe),
            "--lr",
            "1e-3",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0 and result.stdout.strip() == "o/merged"
    config = seen["config"]
    assert (config.learning_rate, config.epochs, config.lora_r, config.method) == (1e-3, 1, 16, "rt")


def test_loss_normalisations_weigh_tokens_or_micro_batches():
    from rtune.training.trainer import normalised_loss

    sums, counts = torch.tensor([6.0, 2.0]), torch.tensor([3, 1])  # two micro-batches of one accumulated batch
    token_weighted = [
        normalised_loss(s, n, counts.sum(), "batch_tokens", 2, 1) for s, n in zip(sums, counts, strict=False)
    ]
    assert float(sum(token_weighted)) == pytest.approx(8.0 / 4)  # every supervised token counts once
    batch_weighted = [
        normalised_loss(s, n, counts.sum(), "micro_batch", 2, 1) for s, n in zip(sums, counts, strict=False)
    ]
    assert float(sum(batch_weighted)) == pytest.approx((6.0 / 3 + 2.0 / 1) / 2)  # every micro-batch counts once
    assert float(normalised_loss(sums[0], counts[0], counts.sum(), "batch_tokens", 2, 2)) == pytest.approx(6.0 / 4 * 2)


def test_paper_recipe_uses_random_batches_and_micro_batch_means():
    config = load_train_config("paper_qlora")
    assert config.group_by_length is False and config.loss_normalization == "micro_batch"
    cpu = load_train_config("lora_cpu")  # the CPU recipe keeps rtune's own: length groups, every token weighs the same
    assert cpu.group_by_length is True and cpu.loss_normalization == "batch_tokens"


def test_random_batches_are_a_plain_seeded_permutation():
    """group_by_length: false draws the examples in a uniform random order (HF Trainer's RandomSampler), no
    length sorting: batches span lengths as random draws do, and each epoch has its own order."""
    from rtune.training.data import LengthGroupedShuffleSampler

    lengths = [(i * 37) % 101 for i in range(64)]
    sampler = LengthGroupedShuffleSampler(lengths, batch_size=4, seed=0, group_by_length=False)
    order = list(sampler)
    assert order == torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist() == list(sampler)
    batches = [order[i : i + 4] for i in range(0, 64, 4)]
    assert sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches) > 40
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(sampler) == list(range(64))


def test_micro_batch_loss_through_the_trainer_is_the_mean_of_micro_batch_means(tiny_model_dir, data_file, tmp_path):
    """One optimizer step of 4 random micro-batches of 2 under `micro_batch` trains on (and logs) the mean of
    the micro-batches' own token means (the model's loss on each padded micro-batch), as HF Trainer before
    4.46 did; `batch_tokens`' token mean over all 8 examples is another number on this data."""
    from rtune.training.data import LengthGroupedShuffleSampler, PaddingCollator, build_dataset, load_training_records

    config = _config(
        tiny_model_dir,
        data_file,
        method="it",
        batch_size=2,
        grad_accum=4,
        max_steps=1,
        group_by_length=False,
        loss_normalization="micro_batch",
        lora_dropout=0.0,
        precision="fp32",
    )
    train(config, tmp_path / "run")
    [logged] = _losses(tmp_path / "run")

    model, tokenizer = load_model(str(tiny_model_dir))  # LoRA starts at zero: the first step sees the base model
    dataset, _ = build_dataset(load_training_records(data_file, "it").records, tokenizer, "it", 64, "data")
    assert len(dataset) == 8
    order = list(LengthGroupedShuffleSampler(dataset.lengths, 2, 0, group_by_length=False))
    collate, means, sums, tokens = PaddingCollator(tokenizer.pad_token_id), [], 0.0, 0
    for start in range(0, 8, 2):
        batch = collate([dataset[i] for i in order[start : start + 2]])
        with torch.no_grad():
            mean = model(**batch).loss.item()  # HF's causal-LM loss: token mean over the micro-batch
        n = int((batch["labels"][:, 1:] != -100).sum())
        means.append(mean)
        sums, tokens = sums + mean * n, tokens + n
    assert logged == pytest.approx(sum(means) / 4, rel=1e-5)
    assert abs(sum(means) / 4 - sums / tokens) > 1e-2  # the two normalisations are told apart here


def test_eos_probe_logs_a_rate_per_epoch_and_does_not_change_the_run(tiny_model_dir, data_file, tmp_path):
    plain, probed = tmp_path / "plain", tmp_path / "probed"
    train(_config(tiny_model_dir, data_file, epochs=2, save_steps=100), plain)
    train(_config(tiny_model_dir, data_file, epochs=2, save_steps=100, eos_probe=3, eos_probe_tokens=8), probed)
    rows = [row for row in read_jsonl(probed / "metrics.jsonl") if "eos_rate" in row]
    assert [row["epoch"] for row in rows] == [1.0, 2.0]
    assert all(
        row["eos_probe_n"] == 3 and 0 <= row["eos_rate"] <= 1 and 0 < row["eos_probe_mean_tokens"] <= 8 for row in rows
    )
    assert _losses(plain) == [row["loss"] for row in read_jsonl(probed / "metrics.jsonl") if "loss" in row]
    assert (
        load_file(plain / "adapter" / "adapter_model.safetensors").keys()
        == load_file(probed / "adapter" / "adapter_model.safetensors").keys()
    )
    for name, tensor in load_file(plain / "adapter" / "adapter_model.safetensors").items():
        assert torch.equal(tensor, load_file(probed / "adapter" / "adapter_model.safetensors")[name]), name
