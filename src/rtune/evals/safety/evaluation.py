"""A safety run as one library call: `SafetyRun` holds everything it takes, `run` does it.

The CLI and the pipeline both build a `SafetyRun` and call `run`, so a run directory is the same
whoever made it: run.json (what decides the numbers), generations.jsonl and outputs.json (when a
model answers), results.jsonl (one verdict per prompt), summary.json and report.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator, model_validator

from rtune.errors import RtuneError
from rtune.evals.safety.judging import judge_outputs
from rtune.evals.safety.outputs import generate_answers, match_outputs, output_rows
from rtune.evals.safety.rates import SafetySummary, summarise
from rtune.evals.safety.report import render_report
from rtune.evals.safety.sets import SETS, load_items, parse_sets
from rtune.generation import DecodingParams, GenerationCache, from_spec
from rtune.generation.openai_compat import RetrySettings
from rtune.io import atomic_write_json, atomic_write_text, check_output, read_json, sha256_file
from rtune.judges.refusal import load_judge_prompt, make_refusal_judge
from rtune.progress import SILENT, Progress
from rtune.prompting import parse_format
from rtune.redact import redact

# where, how fast and how patiently: the numbers stay
HOW_TO_RUN = {"out", "data_dir", "cache", "batch_size", "hide_examples", "timeout", "max_retries"}


class SafetyRun(RetrySettings):
    """Everything a safety run takes. The fields outside HOW_TO_RUN are its identity: they go into run.json,
    and a rerun into the same directory must match them to resume."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Run directory: per-item results, summary.json, report.md (rerun to resume).")
    model: str | None = Field(
        None, description="Model spec to generate with (hf:..., vllm:..., openai:...@URL, or a bare model)."
    )
    outputs: Path | None = Field(
        None, description="Score an existing JSON list of {instruction, output[, set][, id]} instead of generating."
    )
    # The default is the CLI's text; validation turns it (or any comma-separated text) into set names.
    sets: tuple[str, ...] = Field(",".join(SETS), validate_default=True, description="Comma-separated sets.")
    judge: str = Field("keyword", description="keyword, or a judge model spec for the LLM judge.")
    limit: int | None = Field(None, ge=1, description="At most N prompts per set (seeded, spread over subsets).")
    limits: dict[str, int] = Field(
        {}, description="Per-set limits replacing `limit` for those sets (e.g. {xstest: 450})."
    )
    seed: int = Field(0, description="Seed for --limit sampling and the bootstrap.")
    max_new_tokens: int = Field(2048, ge=1, description="Answer length cap (the paper: 2,048).")
    prompt: str = Field(
        "chat",
        description="chat: the model's chat template (Tulu's when it has none); tulu: the paper's raw "
        "Tulu prompt; plain: the prompt alone; or a URIAL mode or prompt file.",
    )
    judge_max_new_tokens: int = Field(2048, ge=1, description="Length cap of the LLM judge's answer.")
    judge_retries: int = Field(2, ge=0, description="Re-asks when the LLM judge gives no label (the paper: 0).")
    judge_prompt: Path | None = Field(
        None,
        description="Prompt file for the LLM judge in the RT paper's syntax "
        "({prompt}, {model_output}); default: rtune's own prompt.",
    )
    data_dir: Path | None = Field(None, description="Local benchmark copies (default: $RTUNE_DATA_DIR, else the hub).")
    cache: Path | None = Field(None, description="Generation cache file (default: OUT/cache.sqlite).")
    batch_size: int | None = Field(None, ge=1, description="Batch size for in-process models.")
    hide_examples: bool = Field(False, description="Leave example prompts and answers out of report.md.")

    @field_validator("sets", mode="before")
    @classmethod
    def _known_sets(cls, value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
        return parse_sets(value if isinstance(value, str) else ",".join(value))

    @field_validator("prompt")
    @classmethod
    def _known_prompt(cls, value: str) -> str:
        parse_format(value)  # an unknown format or a missing prompt file fails here, before any work
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SafetyRun:
        if (self.model is None) == (self.outputs is None):
            raise RtuneError("give exactly one of --model and --outputs")
        return self

    @model_validator(mode="after")
    def _judge_prompt_fits(self) -> SafetyRun:
        if self.judge_prompt is not None:
            if self.judge == "keyword":
                raise RtuneError("--judge-prompt needs an LLM judge (--judge MODEL), not the keyword judge")
            load_judge_prompt(self.judge_prompt)  # a file without {prompt} or {model_output} fails here
        return self

    def identity(self) -> dict:
        """The settings that decide the numbers (recorded in run.json and summary.json); a judge prompt file
        by its name and text hash, and only when one is used (so runs made before the option still resume)."""
        identity = self.model_dump(mode="json", exclude=HOW_TO_RUN | {"judge_prompt"})
        if self.judge_prompt is not None:
            identity["judge_prompt"] = load_judge_prompt(self.judge_prompt).version
        return {**identity, **{name: redact(identity[name]) for name in ("model", "judge") if identity[name]}}


def _check_manifest(path: Path, manifest: dict) -> None:
    """Write run.json on the first run; refuse a rerun whose settings differ, so logs never mix two runs."""
    if path.exists():
        previous = read_json(path)
        changed = sorted(key for key in set(previous) | set(manifest) if previous.get(key) != manifest.get(key))
        if changed:
            raise RtuneError(
                f"{path.parent} holds a run made with other settings (differing: {', '.join(changed)}); "
                "use another --out directory"
            )
    else:
        atomic_write_json(path, manifest)


def run(
    settings: SafetyRun, progress: Progress = SILENT, say: Callable[[str], None] = lambda message: None
) -> SafetySummary:
    """Generate (or read) answers, judge them, and write the run directory; returns what summary.json holds.

    Model and LLM-judge calls go through the persistent generation cache (`cache`, default
    `out/cache.sqlite`); the per-item logs make a killed run resume where it stopped. `progress`
    counts answers and verdicts; `say` hears what a user should know (the prompt counts, a resume).
    """
    s, out = settings, settings.out
    check_output(out, inputs=[s.outputs, s.cache, s.judge_prompt], directory=True)
    items = load_items(s.sets, s.data_dir, s.limit, s.seed, s.limits)
    counts = Counter(f"{item.set}/{item.subset}" for item in items)
    say(f"{len(items)} prompts: " + ", ".join(f"{key} {n}" for key, n in counts.items()))
    needs_cache = s.model is not None or s.judge != "keyword"
    cache = GenerationCache(s.cache or out / "cache.sqlite") if needs_cache else None
    judge = make_refusal_judge(
        s.judge,
        s.judge_max_new_tokens,
        s.judge_retries,
        cache=cache,
        prompt_file=s.judge_prompt,
        batch_size=s.batch_size,
        timeout=s.timeout,
        max_retries=s.max_retries,
    )
    manifest = {**s.identity(), "judge_name": judge.name}
    if s.outputs:
        outputs = match_outputs(items, s.outputs)
        _check_manifest(out / "run.json", {**manifest, "outputs_sha256": sha256_file(s.outputs)})
    else:
        generator = from_spec(
            s.model, cache=cache, batch_size=s.batch_size, timeout=s.timeout, max_retries=s.max_retries
        )
        _check_manifest(out / "run.json", {**manifest, "generator": generator.fingerprint})
        outputs = generate_answers(
            items,
            generator,
            out / "generations.jsonl",
            parse_format(s.prompt),
            DecodingParams(max_new_tokens=s.max_new_tokens),
            progress,
            say,
        )
        del generator  # free the model before a local judge loads its own
        atomic_write_json(out / "outputs.json", output_rows(items, outputs, s.model))
    rows = judge_outputs(items, outputs, judge, out / "results.jsonl", progress)
    summary = summarise(rows, s.seed, s.identity())
    atomic_write_json(out / "summary.json", summary.model_dump(mode="json"))
    atomic_write_text(out / "report.md", render_report(summary, rows, s.hide_examples))
    return summary
