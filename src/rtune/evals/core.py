"""`rtune eval core`: MMLU, ARC, HellaSwag, OpenBookQA, PIQA by choice log-likelihood, GSM8K by generation.

Orchestration only: tasks come from `core_tasks`, prompts from `core_prompts`/`gsm8k`, scores
from `loglikelihood` (each context computed once) and the generation engine, the JSON from
`core_results`. Work is done in units (one task, or one MMLU subject); each finished unit is
saved beside the output (`<out>.parts/`) and skipped when the same command runs again; inside a
unit, scored items are appended as they finish and GSM8K replies sit in a generation cache there,
so a killed run loses at most one chunk of work.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rtune.data.sources import resolve_data_dir
from rtune.errors import RtuneError
from rtune.evals import gsm8k
from rtune.evals.core_prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER, PromptStyle, mc_request, prompt_style
from rtune.evals.core_results import UnitResult, results_document
from rtune.evals.core_tasks import GENERATIVE_TASKS, LM_EVAL_NAMES, MC_TASKS, MCItem, MCTask, load_gsm8k
from rtune.evals.loglikelihood import ChoiceScore, ScoreRequest
from rtune.io import append_jsonl, atomic_write_json, read_json, read_jsonl, stable_hash, write_jsonl
from rtune.templates import TULU_CHAT_TEMPLATE

PARTS_FORMAT = 1  # bump when a saved unit's meaning changes, so old parts are recomputed
GENERATION_CHUNK = 16
SCORE_CHUNK = 256  # items scored between appends to a unit's partial file


class CoreEvalSettings(BaseModel):
    """Everything that decides the numbers; recorded in the output's `config`."""

    model_config = ConfigDict(frozen=True)

    model: str
    tasks: tuple[str, ...]
    data_dir: str | None = None
    num_fewshot: int | None = Field(None, ge=0)  # None: each task's default (0; GSM8K 8)
    chat_template: bool | None = None  # None: when the tokenizer has a chat template
    limit: int | None = Field(None, ge=1)  # items per unit (per MMLU subject), as lm-eval
    batch_size: int = Field(8, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"
    seed: int = 0
    engine: Literal["builtin", "lm-eval"] = "builtin"


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...


class _Silent:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


def samples_path(out: Path) -> Path:
    return out.with_name(out.stem + "_samples.jsonl")


def parts_dir(out: Path) -> Path:
    return out.with_name(out.stem + ".parts")


def _versions() -> dict[str, str]:
    found = {}
    for package in ("rtune", "torch", "transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


class _Session:
    """What a run shares between units: settings, data, tokenizer and prompt style, the model once loaded."""

    def __init__(self, settings: CoreEvalSettings, out: Path, progress: Progress, generator):
        import torch

        from rtune.models import load_tokenizer, model_fingerprint, prepare_model

        self.settings, self.progress, self._generator = settings, progress, generator
        self.data_dir = resolve_data_dir(settings.data_dir)
        self.parts = parts_dir(out)
        self.model_path = prepare_model(settings.model)
        self.tokenizer = load_tokenizer(self.model_path)
        self.style: PromptStyle = prompt_style(self.tokenizer, settings.chat_template)
        self.fingerprint = model_fingerprint(self.model_path)
        self.device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self._scorer = None
        torch.manual_seed(settings.seed)

    @property
    def scorer(self):
        if self._scorer is None:
            import torch

            from rtune.evals.loglikelihood import ChoiceScorer
            from rtune.models import load_model

            model, _ = load_model(self.model_path, dtype=getattr(torch, self.settings.dtype))
            self._scorer = ChoiceScorer(model.to(self.device), self.tokenizer, batch_size=self.settings.batch_size)
        return self._scorer

    def release_model(self) -> None:
        """Free the scoring model before generation loads its own copy."""
        if self._scorer is not None:
            import torch

            self._scorer = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def generator(self):
        if self._generator is None:
            from rtune.generation import GenerationCache, from_spec

            cache = GenerationCache(self.parts / "generation.sqlite")
            self._generator = from_spec(self.model_path, cache=cache, batch_size=self.settings.batch_size, device=self.device,
                                        bf16=self.settings.dtype == "bfloat16")
        return self._generator

    def unit_key(self, name: str, n_shot: int) -> str:
        s = self.settings
        return stable_hash({"format": PARTS_FORMAT, "unit": name, "model": self.fingerprint, "chat": self.style.chat,
                            "template": self.tokenizer.chat_template if self.style.chat else None, "n_shot": n_shot,
                            "limit": s.limit, "dtype": s.dtype, "data": str(self.data_dir)})

    def load_part(self, name: str, key: str) -> UnitResult | None:
        path = self.parts / f"{name}.json"
        if not path.exists():
            return None
        saved = read_json(path)
        if saved.get("key") != key:
            return None
        return UnitResult(**saved["unit"])

    def save_part(self, unit: UnitResult, key: str) -> None:
        atomic_write_json(self.parts / f"{unit.name}.json", {"key": key, "unit": asdict(unit)}, indent=None)


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # first of equal maxima, as numpy


def mc_outcome(item: MCItem, scores: list[ChoiceScore]) -> tuple[int, int]:
    """(pred, pred_norm): argmax of log-likelihood, and of log-likelihood per character of the choice (lm-eval's acc_norm)."""
    logprobs = [s.logprob for s in scores]
    return _argmax(logprobs), _argmax([lp / len(choice) for lp, choice in zip(logprobs, item.choices)])


def _mc_sample(name: str, doc_id: int, item: MCItem, request: ScoreRequest, scores: list[ChoiceScore], metrics) -> dict:
    pred, pred_norm = mc_outcome(item, scores)
    hits = {"acc": float(pred == item.gold), "acc_norm": float(pred_norm == item.gold)}
    return {"task": name, "doc_id": doc_id, "id": item.id, "context": request.context, "continuations": list(request.continuations),
            "target": item.gold, "logprobs": [s.logprob for s in scores], "is_greedy": [s.is_greedy for s in scores],
            "n_tokens": [s.n_tokens for s in scores], "pred": pred, "pred_norm": pred_norm, **{m: hits[m] for m in metrics}}


def _score_unit(session: _Session, name: str, task: MCTask, items: list[MCItem], requests: list[ScoreRequest], key: str) -> list[dict]:
    """Per-item samples of one unit; scored in chunks appended to `<unit>.partial.jsonl`, so a killed run resumes mid-unit."""
    partial = session.parts / f"{name}.partial.jsonl"
    done = {row["doc_id"]: row for row in (read_jsonl(partial, tolerate_truncated_tail=True) if partial.exists() else [])
            if row.pop("key", None) == key}
    session.progress.advance(len(done))
    todo = [doc_id for doc_id in range(len(items)) if doc_id not in done]
    for start in range(0, len(todo), SCORE_CHUNK):
        chunk = todo[start: start + SCORE_CHUNK]
        scores = session.scorer.score([requests[i] for i in chunk], progress=session.progress.advance)
        for doc_id, item_scores in zip(chunk, scores):
            done[doc_id] = _mc_sample(name, doc_id, items[doc_id], requests[doc_id], item_scores, task.metrics)
            append_jsonl(partial, {"key": key, **done[doc_id]})
    partial.unlink(missing_ok=True)
    return [done[doc_id] for doc_id in range(len(items))]


def _mc_shots(session: _Session, task: MCTask) -> tuple[int, list[MCItem]]:
    requested = session.settings.num_fewshot or 0
    if requested == 0:
        return 0, []
    if task.load_fewshot is None:
        return 0, []  # recorded as 0 in n-shot: no few-shot split in the task definition
    return requested, task.load_fewshot(session.data_dir)


def evaluate_mc_task(session: _Session, task: MCTask) -> list[UnitResult]:
    items = task.load(session.data_dir)
    n_shot, pool = _mc_shots(session, task)
    by_unit: dict[str, list[MCItem]] = {}
    for item in items:
        by_unit.setdefault(f"mmlu_{item.subject}" if item.subject else task.name, []).append(item)
    limit = session.settings.limit
    units, pending = [], []
    for name, unit_items in by_unit.items():
        key = session.unit_key(name, n_shot)
        saved = session.load_part(name, key)
        if saved is not None:
            units.append(saved)
        else:
            pending.append((name, unit_items, key))
    session.progress.start(task.name, sum(len(unit_items[:limit]) for _, unit_items, _ in pending))
    for name, unit_items, key in pending:
        subject = unit_items[0].subject
        shots = [shot for shot in pool if shot.subject == subject][:n_shot]
        if len(shots) < n_shot:
            raise RtuneError(f"{name}: {n_shot} few-shot examples asked for, the dev split has {len(shots)}")
        chosen = unit_items[:limit]
        requests = [mc_request(item, shots, task.description(subject), session.style) for item in chosen]
        samples = _score_unit(session, name, task, chosen, requests, key)
        values = {metric: [sample[metric] for sample in samples] for metric in task.metrics}
        unit = UnitResult(name, values, len(unit_items), n_shot, task.version, samples)
        session.save_part(unit, key)
        units.append(unit)
    order = list(by_unit)
    return sorted(units, key=lambda u: order.index(u.name))


def evaluate_gsm8k(session: _Session) -> UnitResult:
    from rtune.generation import DecodingParams, GenerationRequest

    n_shot = gsm8k.N_SHOTS if session.settings.num_fewshot is None else session.settings.num_fewshot
    if n_shot > gsm8k.N_SHOTS:
        raise RtuneError(f"gsm8k: at most {gsm8k.N_SHOTS} chain-of-thought exemplars exist; --num-fewshot {n_shot} asked")
    key = session.unit_key("gsm8k", n_shot)
    saved = session.load_part("gsm8k", key)
    if saved is not None:
        return saved
    items = load_gsm8k(session.data_dir)
    chosen = items[: session.settings.limit]
    exemplars = gsm8k.load_exemplars()[:n_shot]
    params = DecodingParams(max_new_tokens=gsm8k.MAX_NEW_TOKENS, temperature=0.0, stop=gsm8k.STOP, seed=session.settings.seed)
    requests = [GenerationRequest(messages=gsm8k.chat_messages(item.question, exemplars), params=params) if session.style.chat
                else GenerationRequest(prompt=gsm8k.plain_prompt(item.question, exemplars), params=params) for item in chosen]
    session.release_model()
    generator = session.generator()
    session.progress.start("gsm8k", len(requests))
    replies = []
    for start in range(0, len(requests), GENERATION_CHUNK):
        replies += generator.generate(requests[start: start + GENERATION_CHUNK])
        session.progress.advance(len(requests[start: start + GENERATION_CHUNK]))
    values: dict[str, list[float]] = {"exact_match,strict-match": [], "exact_match,flexible-extract": []}
    samples = []
    for doc_id, (item, request, reply) in enumerate(zip(chosen, requests, replies)):
        score = gsm8k.score_reply(reply.text, item.target)
        values["exact_match,strict-match"].append(float(score.strict_correct))
        values["exact_match,flexible-extract"].append(float(score.flexible_correct))
        samples.append({"task": "gsm8k", "doc_id": doc_id, "id": item.id, "target": item.target,
                        "prompt": request.prompt, "messages": list(request.messages) if request.messages else None,
                        "reply": reply.text, "finish_reason": reply.finish_reason,
                        "strict": score.strict, "flexible": score.flexible,
                        "exact_match,strict-match": float(score.strict_correct),
                        "exact_match,flexible-extract": float(score.flexible_correct)})
    unit = UnitResult("gsm8k", values, len(items), n_shot, "4.0", samples)
    session.save_part(unit, key)
    return unit


def _task_configs(session: _Session, tasks: tuple[str, ...]) -> dict:
    configs = {}
    for name in tasks:
        common = {"task": name, "lm_eval_task": LM_EVAL_NAMES[name], "apply_chat_template": session.style.chat}
        if name in MC_TASKS:
            task = MC_TASKS[name]
            configs[name] = {**common, "output_type": "multiple_choice", "metric_list": list(task.metrics),
                             "dataset": task.local_files if session.data_dir else task.hub_dataset,
                             "target_delimiter": "" if session.style.chat else TARGET_DELIMITER,
                             "fewshot_delimiter": FEWSHOT_DELIMITER, "fewshot_split": "dev" if task.load_fewshot else None}
        else:
            configs[name] = {**common, "output_type": "generate_until", "dataset": "gsm8k/test.jsonl" if session.data_dir else "openai/gsm8k:main",
                             "metric_list": ["exact_match"], "filters": ["strict-match", "flexible-extract"],
                             "generation_kwargs": {"until": list(gsm8k.STOP), "do_sample": False, "max_gen_toks": gsm8k.MAX_NEW_TOKENS},
                             "fewshot_as_multiturn": session.style.chat}
    return configs


def _run_config(session: _Session) -> dict:
    s = session.settings
    template = session.tokenizer.chat_template if session.style.chat else None
    return {
        "model": s.model, "model_path": session.model_path, "model_fingerprint": session.fingerprint, "engine": "builtin",
        "chat_template": session.style.chat,
        "chat_template_name": None if not session.style.chat else ("tulu" if template in (None, TULU_CHAT_TEMPLATE) else "model"),
        "fewshot_as_multiturn": session.style.chat, "num_fewshot": s.num_fewshot, "limit": s.limit, "dtype": s.dtype,
        "batch_size": s.batch_size, "device": session.device, "seed": s.seed,
        "data_dir": str(session.data_dir) if session.data_dir else None, "tasks": list(s.tasks),
        "versions": _versions(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_core_eval(settings: CoreEvalSettings, out: Path, progress: Progress | None = None, generator=None) -> dict:
    """Evaluate, write `out` (results JSON) and its `_samples.jsonl`, and return the results document."""
    started = time.time()
    if settings.engine == "lm-eval":
        from rtune.evals.core_lm_eval import run_lm_eval

        document, samples = run_lm_eval(settings)
    else:
        session = _Session(settings, out, progress or _Silent(), generator)
        units: list[UnitResult] = []
        for name in settings.tasks:  # scoring first, then generation, so only one model copy is loaded at a time
            if name in MC_TASKS:
                units += evaluate_mc_task(session, MC_TASKS[name])
        if any(name in GENERATIVE_TASKS for name in settings.tasks):
            units.append(evaluate_gsm8k(session))
        document = results_document(units, _run_config(session), _task_configs(session, settings.tasks), time.time() - started)
        samples = [sample for unit in units for sample in unit.samples]
    atomic_write_json(out, document)
    write_jsonl(samples_path(out), samples)
    return document
