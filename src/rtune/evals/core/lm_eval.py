"""`rtune eval core --engine lm-eval`: the same evaluation through lm-evaluation-harness, read back into our shape.

lm-eval is an optional extra (`pip install 'rtune[lm-eval]'`). With a data dir it reads our local copies
through generated task files (`lm_eval_tasks`), offline; without one, its own tasks on the Hugging Face hub.
Its `simple_evaluate` output is renamed to our task names (gsm8k_cot_llama or rtune_gsm8k -> gsm8k) and
re-keyed through `results.entry`, so a report reads either engine's file alike. lm-eval runs today's
protocol only (`--protocol lm-eval`).
"""

from __future__ import annotations

import json
import math
import time

from pydantic import BaseModel

from rtune.errors import RtuneError
from rtune.evals.core.lm_eval_tasks import PREFIX, write_tasks
from rtune.evals.core.multiple_choice import argmax
from rtune.evals.core.results import ARC_GROUP, ARC_MEMBERS, arc_group, entry
from rtune.evals.core.tasks import LM_EVAL_NAMES

OUR_NAMES = {theirs: ours for ours, theirs in LM_EVAL_NAMES.items()}


def import_lm_eval():
    try:
        import lm_eval
    except ImportError as exc:
        raise RtuneError(
            "--engine lm-eval needs lm-evaluation-harness (rtune's optional 'lm-eval' extra): "
            "pip install 'lm-eval[hf]'; or leave --engine at builtin, which needs neither"
        ) from exc
    return lm_eval


def _ours(name: str) -> str:
    return OUR_NAMES.get(name, name.removeprefix(PREFIX))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def normalise_entry(name: str, metrics: dict) -> dict:
    """lm-eval's {"acc,none": .., "acc_stderr,none": .., "alias": ..} as our entry (both key styles)."""
    pairs = {}
    for key, value in metrics.items():
        metric, sep, filter_name = key.partition(",")
        if not sep or metric.endswith("_stderr") or _number(value) is None:
            continue
        stderr = _number(metrics.get(f"{metric}_stderr,{filter_name}"))
        pairs[metric if filter_name == "none" else key] = (float(value), stderr)
    return entry(name, pairs)


def _sample(name: str, row: dict) -> dict:
    """One logged sample; multiple-choice ones also as ours (context, continuations, log-likelihoods), generated
    ones with the reply."""
    metric_values = {key: value for key, value in row.items() if _number(value) is not None and key != "doc_id"}
    sample = {
        "task": _ours(name),
        "doc_id": row.get("doc_id"),
        "target": row.get("target"),
        "filter": row.get("filter"),
        "filtered_resps": row.get("filtered_resps"),
        **metric_values,
    }
    arguments, responses, raw = row.get("arguments") or [], row.get("filtered_resps") or [], row.get("resps") or []
    if raw and isinstance(raw[0], (list, tuple)) and raw[0] and isinstance(raw[0][0], str):
        sample["reply"] = raw[0][0]
    if arguments and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in responses):
        sample |= {
            "context": arguments[0][0],
            "continuations": [a[1] for a in arguments],
            "logprobs": [float(r[0]) for r in responses],
        }
    return sample


def normalise_lm_eval(raw: dict) -> tuple[dict, list[dict]]:
    """(results document, samples) from the dict lm_eval.simple_evaluate returns."""
    results = {_ours(name): normalise_entry(_ours(name), metrics) for name, metrics in raw.get("results", {}).items()}
    groups = {_ours(name): normalise_entry(_ours(name), metrics) for name, metrics in raw.get("groups", {}).items()}
    renamed = {
        key: {_ours(name): value for name, value in raw.get(key, {}).items()}
        for key in ("configs", "versions", "n-shot", "n-samples", "higher_is_better")
    }
    tree = {
        _ours(group): [_ours(member) for member in members] for group, members in raw.get("group_subtasks", {}).items()
    }
    arc = arc_group(results, {name: counts.get("effective") for name, counts in renamed["n-samples"].items()})
    if arc is not None:
        groups, tree = {ARC_GROUP: arc, **groups}, {ARC_GROUP: list(ARC_MEMBERS), **tree}
        results = {ARC_GROUP: arc, **results}
    lm_config = raw.get("config", {})
    config = {
        "engine": "lm-eval",
        "protocol": "lm-eval",
        "lm_eval_version": raw.get("lm_eval_version"),
        "lm_eval_config": lm_config,
        "model": lm_config.get("model_args"),
        "batch_size": lm_config.get("batch_size"),
        "limit": lm_config.get("limit"),
        "chat_template": bool(raw.get("chat_template")),
        "fewshot_as_multiturn": raw.get("fewshot_as_multiturn"),
    }
    document = {
        "results": results,
        "groups": groups,
        "group_subtasks": tree,
        **renamed,
        "config": config,
        "total_evaluation_time_seconds": _number(raw.get("total_evaluation_time_seconds")),
    }
    samples = [_sample(name, row) for name, rows in raw.get("samples", {}).items() for row in rows]
    return _plain(document), _plain(samples)


def _plain(value):
    """JSON-ready: lm-eval's configs hold functions and dtypes; those are written as their str()."""
    return json.loads(json.dumps(value, default=str))


def run_lm_eval(settings) -> tuple[dict, list[dict]]:
    """Run lm-eval's HF backend on the same model, tasks and options; normalised results and samples."""
    lm_eval = import_lm_eval()
    from lm_eval.tasks import TaskManager

    from rtune.data.registry import resolve_data_dir
    from rtune.evals.core.prompts import prompt_style
    from rtune.evals.core.session import parts_dir
    from rtune.models import load_tokenizer, prepare_model, resolve_device

    if settings.limits:
        raise RtuneError("--engine lm-eval takes one limit for every task, not per-task limits")
    path = prepare_model(settings.model)
    chat = prompt_style(load_tokenizer(path), settings.chat_template).chat
    data_dir = resolve_data_dir(settings.data_dir)
    if data_dir is None:
        tasks, manager = [LM_EVAL_NAMES[t] for t in settings.tasks], None
    else:
        folder = parts_dir(settings.out) / "lm_eval_tasks"
        tasks = write_tasks(list(settings.tasks), data_dir, folder)
        manager = TaskManager(include_path=str(folder), include_defaults=False)
    started = time.perf_counter()
    raw = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={path},dtype={settings.dtype}",
        tasks=tasks,
        task_manager=manager,
        num_fewshot=settings.num_fewshot,
        batch_size=settings.batch_size,
        device=resolve_device(settings.device),  # lm-eval's own default is cuda, even on a CPU-only machine
        limit=settings.limit,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat,
        log_samples=True,
        random_seed=settings.seed,
        numpy_random_seed=settings.seed,
        torch_random_seed=settings.seed,
    )
    document, samples = normalise_lm_eval(raw)
    # simple_evaluate leaves the time to lm-eval's command line; ours, like the builtin engine's
    document["total_evaluation_time_seconds"] = round(time.perf_counter() - started, 1)
    document["config"].update(
        {
            "model": settings.model,
            "model_path": path,
            "chat_template": chat,
            "dtype": settings.dtype,
            "num_fewshot": settings.num_fewshot,
            "seed": settings.seed,
            "data_dir": str(data_dir) if data_dir else None,
            "tasks": list(settings.tasks),
        }
    )
    return document, samples


class Agreement(BaseModel):
    """How one task's per-item samples from the builtin engine and from lm-eval compare."""

    items: int  # in both runs
    same_prompt: int  # identical context and continuations
    same_scores: int  # identical acc and acc_norm
    same_prediction: int  # the same choice has the highest log-likelihood
    within: int  # every choice's log-likelihood within the tolerance asked
    max_abs_delta: float


def agreement(ours: list[dict], theirs: list[dict], tolerance: float = 3e-3) -> dict[str, Agreement]:
    """Per task (MMLU's subjects together), the multiple-choice items both sample files hold, compared.

    `tolerance` bounds each log-likelihood's difference, absolute or relative: float32 in another batch layout
    moves a short choice after a long context by up to 1.3e-3 (3e-3 holds on every CPU we ran), and a
    300-token choice by its sum's 1e-5; in float64 both engines agree to 1.4e-7 or better.
    """
    mine = {(s["task"], s["doc_id"]): s for s in ours if "logprobs" in s}
    lm = {(s["task"], s["doc_id"]): s for s in theirs if "logprobs" in s}
    counts: dict[str, list] = {}
    for key in mine.keys() & lm.keys():
        a, b = mine[key], lm[key]
        pairs = list(zip(a["logprobs"], b["logprobs"], strict=True))
        row = counts.setdefault("mmlu" if key[0].startswith("mmlu_") else key[0], [0, 0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += (a["context"], a["continuations"]) == (b["context"], b["continuations"])
        row[2] += (a.get("acc"), a.get("acc_norm")) == (b.get("acc"), b.get("acc_norm"))
        row[3] += argmax(a["logprobs"]) == argmax(b["logprobs"])
        row[4] += all(math.isclose(x, y, rel_tol=tolerance / 300, abs_tol=tolerance) for x, y in pairs)
        row[5] = max(row[5], *(abs(x - y) for x, y in pairs))
    return {
        task: Agreement(**dict(zip(Agreement.model_fields, row, strict=True))) for task, row in sorted(counts.items())
    }
