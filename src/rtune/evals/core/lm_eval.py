"""`rtune eval core --engine lm-eval`: the same evaluation through lm-evaluation-harness, read back into our shape.

lm-eval is an optional extra (`pip install 'rtune[lm-eval]'` or `pip install lm-eval`) and reads its datasets from
the Hugging Face hub. Its `simple_evaluate` output is renamed to our task names (gsm8k_cot_llama ->
gsm8k) and re-keyed through `results.entry`, so a report reads either engine's file alike.
"""

from __future__ import annotations

from rtune.errors import RtuneError
from rtune.evals.core.results import entry
from rtune.evals.core.tasks import LM_EVAL_NAMES

OUR_NAMES = {theirs: ours for ours, theirs in LM_EVAL_NAMES.items()}


def import_lm_eval():
    try:
        import lm_eval
    except ImportError as exc:
        raise RtuneError("--engine lm-eval needs lm-evaluation-harness (rtune's optional 'lm-eval' extra): "
                         "pip install lm-eval; "
                         "or leave --engine at builtin, which needs neither lm-eval nor the hub") from exc
    return lm_eval


def _ours(name: str) -> str:
    return OUR_NAMES.get(name, name)


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


def normalise_lm_eval(raw: dict) -> tuple[dict, list[dict]]:
    """(results document, samples) from the dict lm_eval.simple_evaluate returns."""
    results = {_ours(name): normalise_entry(_ours(name), metrics) for name, metrics in raw.get("results", {}).items()}
    groups = {_ours(name): normalise_entry(_ours(name), metrics) for name, metrics in raw.get("groups", {}).items()}
    renamed = {key: {_ours(name): value for name, value in raw.get(key, {}).items()}
               for key in ("configs", "versions", "n-shot", "n-samples", "higher_is_better")}
    tree = {_ours(group): [_ours(member) for member in members]
            for group, members in raw.get("group_subtasks", {}).items()}
    lm_config = raw.get("config", {})
    config = {"engine": "lm-eval", "lm_eval_version": raw.get("lm_eval_version"), "lm_eval_config": lm_config,
              "model": lm_config.get("model_args"), "batch_size": lm_config.get("batch_size"),
              "limit": lm_config.get("limit"),
              "chat_template": bool(raw.get("chat_template")), "fewshot_as_multiturn": raw.get("fewshot_as_multiturn")}
    document = {"results": results, "groups": groups, "group_subtasks": tree, **renamed, "config": config,
                "total_evaluation_time_seconds": _number(raw.get("total_evaluation_time_seconds"))}
    samples = []
    for name, rows in raw.get("samples", {}).items():
        for row in rows:
            metric_values = {key: value for key, value in row.items()
                             if _number(value) is not None and key not in ("doc_id",)}
            samples.append({"task": _ours(name), "doc_id": row.get("doc_id"), "target": row.get("target"),
                            "filtered_resps": row.get("filtered_resps"), **metric_values})
    return document, samples


def run_lm_eval(settings) -> tuple[dict, list[dict]]:
    """Run lm-eval's HF backend on the same model, tasks and options; normalised results and samples."""
    lm_eval = import_lm_eval()
    if settings.data_dir:
        raise RtuneError("--engine lm-eval reads its datasets from the Hugging Face hub; "
                         "--data-dir works with --engine builtin only")
    from rtune.evals.core.prompts import prompt_style
    from rtune.models import load_tokenizer, prepare_model

    path = prepare_model(settings.model)
    chat = prompt_style(load_tokenizer(path), settings.chat_template).chat
    device = None if settings.device == "auto" else settings.device
    raw = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={path},dtype={settings.dtype}",
        tasks=[LM_EVAL_NAMES[t] for t in settings.tasks],
        num_fewshot=settings.num_fewshot, batch_size=settings.batch_size, device=device, limit=settings.limit,
        apply_chat_template=chat, fewshot_as_multiturn=chat, log_samples=True,
        random_seed=settings.seed, numpy_random_seed=settings.seed, torch_random_seed=settings.seed,
    )
    document, samples = normalise_lm_eval(raw)
    document["config"].update({"model": settings.model, "model_path": path, "chat_template": chat,
                               "dtype": settings.dtype, "num_fewshot": settings.num_fewshot, "seed": settings.seed,
                               "tasks": list(settings.tasks)})
    return document, samples
