"""`TrainConfig`: everything that decides what `rtune train` produces; recipes are its YAML form."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rtune.config import describe_validation_error, find_config, read_yaml_mapping
from rtune.errors import RtuneError


class TrainConfig(BaseModel):
    """Everything that decides what `rtune train` produces (see configs/*.yaml for recipes).

    `method`, `model` and `data` usually come from the command line; recipes leave them out.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["it", "rt"] | None = Field(None, description="it: prompt + response; rt: response only")
    model: str | None = Field(None, description="registered name, local folder, .gguf file or hub id")
    data: str | None = Field(None, description="record JSONL ({id, prompt, completion, source})")

    peft: Literal["qlora", "lora", "none"] = Field(
        "lora", description="qlora: 4-bit base + LoRA; none: full fine-tuning"
    )
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = Field(
        "all-linear", description="PEFT target_modules; all-linear skips the LM head"
    )
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True

    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on GPUs and on CPUs with native bf16 (AMX/AVX512-BF16), else fp32"
    )
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = Field("constant", description="any transformers scheduler name: constant, linear, cosine, ...")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: str = Field("adamw_torch", description="transformers optim name, e.g. adamw_torch, paged_adamw_32bit")
    batch_size: int = Field(4, ge=1, description="examples per device per micro-batch")
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    max_length: int = Field(512, ge=8, description="tokens; longer examples are truncated from the right")
    gradient_checkpointing: bool = False
    group_by_length: bool = Field(True, description="batch examples of similar length together (little padding)")
    supervised_head: bool = Field(
        True, description="apply the LM head only where a label is supervised (exact, faster)"
    )
    loss_normalization: Literal["batch_tokens", "micro_batch"] = Field(
        "batch_tokens",
        description="batch_tokens: token mean over the whole accumulated batch; micro_batch: token mean per "
        "micro-batch, averaged over the accumulation steps (the HF Trainer the paper used)",
    )
    eos_probe: int = Field(
        0,
        ge=0,
        description="at each epoch end, answer this many packaged held-out instructions greedily "
        "and log the share of answers that end with EOS (0: off)",
    )
    eos_probe_tokens: int = Field(256, ge=1, description="answer budget of the EOS probe")

    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps (and at each epoch end)")
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int = 0
    check_memory: bool = Field(True, description="refuse to start when the estimated memory exceeds what is free")

    @field_validator("lr_scheduler", "optimizer")
    @classmethod
    def _known_to_transformers(cls, value: str, info) -> str:
        """Checked against transformers' own lists now, not by the Trainer after the model has loaded."""
        from transformers import SchedulerType
        from transformers.training_args import OptimizerNames

        names = [item.value for item in (SchedulerType if info.field_name == "lr_scheduler" else OptimizerNames)]
        if value not in names:
            raise ValueError(f"unknown {info.field_name} '{value}'; expected one of {', '.join(names)}")
        return value

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with the given (non-None) settings replaced, validated again."""
        values = self.model_dump()
        values.update({key: value for key, value in overrides.items() if value is not None})
        try:
            return TrainConfig.model_validate(values)
        except ValidationError as exc:
            raise RtuneError(f"invalid training setting: {describe_validation_error(exc)}") from exc

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The YAML recipe (a path or a shipped name; else the defaults) with command-line overrides applied."""
    if path is None:
        config = TrainConfig()
    else:
        path = find_config(path)
        try:
            config = TrainConfig.model_validate(read_yaml_mapping(path))
        except ValidationError as exc:
            raise RtuneError(f"{path}: {describe_validation_error(exc)}") from exc
    return config.with_overrides(overrides or {})
