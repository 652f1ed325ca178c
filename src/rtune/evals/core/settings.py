"""What `rtune eval core` and the pipeline's core stage are asked to do: one model, the tasks, where to write."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rtune.errors import RtuneError
from rtune.evals.core.tasks import parse_tasks


class CoreEvalSettings(BaseModel):
    """Everything but `out` decides the numbers; the results' `config` records it."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="Registered name (gemma-3-270m), model folder, .gguf file or hub id.")
    out: Path = Field(description="Results JSON (lm-eval shape); samples go to <out stem>_samples.jsonl.")
    tasks: tuple[str, ...] = Field(  # type: ignore[assignment]  # "all" is validated into the tuple of every task
        "all",
        validate_default=True,
        description="Comma-separated: mmlu, arc_easy, arc_challenge, hellaswag, openbookqa, piqa, gsm8k, or 'all'.",
    )
    data_dir: Path | None = Field(None, description="Local datasets (default: $RTUNE_DATA_DIR, else the hub).")
    num_fewshot: int | None = Field(
        None,
        ge=0,
        description="Shots from the dev split where one exists (MMLU); GSM8K takes the first N of its "
        "8 exemplars. Default: 0, GSM8K 8.",
    )
    chat_template: bool | None = Field(
        None,
        description="Wrap questions in the chat template (Tulu when the model has none), like lm-eval "
        "--apply_chat_template. Default: when the tokenizer has one.",
    )
    limit: int | None = Field(None, ge=1, description="First N items per task (per MMLU subject).")
    limits: dict[str, int] = Field(
        {},
        description="Per-task item limits that replace `limit` for those tasks "
        "(e.g. {mmlu: 10}: the first 10 of each subject).",
    )
    batch_size: int = Field(8, ge=1, description="Contexts per forward pass (prompts per batch for GSM8K).")
    dtype: Literal["float32", "bfloat16", "float16", "float64"] = Field(
        "float32",
        description="float32 (exact), bfloat16 or float16; float64 for reference checks (log-likelihoods that "
        "do not depend on the CPU or the batch layout; not for GSM8K, which generates in float32).",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")
    seed: int = 0
    engine: Literal["builtin", "lm-eval"] = Field(
        "builtin",
        description="builtin (context computed once) or lm-eval (lm-evaluation-harness itself, the optional "
        "'lm-eval' extra; local data through generated task files, else the hub).",
    )
    protocol: Literal["paper", "lm-eval"] = Field(  # type: ignore[assignment]  # unset: the engine's (see below)
        None,
        description="paper (lm-eval 0.4.5 as the paper ran it: ' ' before each choice, BOS for Gemma only, "
        "no system turn in Tulu's template) or lm-eval (lm-eval today). Default: paper; "
        "lm-eval for --engine lm-eval.",
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_protocol(cls, data):
        """lm-eval itself runs today's protocol only (its chat mode no longer puts " " before a choice)."""
        if isinstance(data, dict) and data.get("protocol") is None:
            data = {**data, "protocol": "lm-eval" if data.get("engine") == "lm-eval" else "paper"}
        if isinstance(data, dict) and data.get("engine") == "lm-eval" and data["protocol"] != "lm-eval":
            raise RtuneError(
                "--engine lm-eval runs lm-eval's own (today's) protocol; use --protocol lm-eval, or "
                "--engine builtin for --protocol paper"
            )
        return data

    @model_validator(mode="after")
    def _float64_scores_only(self):
        if self.dtype == "float64" and "gsm8k" in self.tasks:
            raise RtuneError("--dtype float64 is for the log-likelihood tasks; GSM8K generates in float32 or bfloat16")
        return self

    def limit_of(self, task: str) -> int | None:
        return self.limits.get(task, self.limit)

    @field_validator("tasks", mode="before")
    @classmethod
    def _known_tasks(cls, value):
        """A comma-separated spec or a list of names, checked, order kept, no duplicates ("all": every task)."""
        return tuple(parse_tasks(value if isinstance(value, str) else ",".join(value)))
