"""The core evaluation end to end: MMLU, ARC, HellaSwag, OpenBookQA, PIQA by choice log-likelihood, GSM8K by generation.

`run` is the whole stage, for `rtune eval core` and the pipeline alike: it scores every unit
(reloading those an identical earlier run finished, see `session`), writes the lm-eval-shaped
results JSON and the samples JSONL, and returns their typed `CoreReport`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from rtune.data import registry
from rtune.evals.core import gsm8k
from rtune.evals.core.multiple_choice import evaluate_mc_task
from rtune.evals.core.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER, PromptStyle
from rtune.evals.core.report import CoreReport, samples_path
from rtune.evals.core.results import UnitResult, results_document
from rtune.evals.core.session import Session
from rtune.evals.core.settings import CoreEvalSettings
from rtune.evals.core.tasks import GENERATIVE_TASKS, LM_EVAL_NAMES, MC_TASKS
from rtune.io import atomic_write_json, check_output, write_jsonl
from rtune.progress import SILENT, Progress
from rtune.templates import TULU_CHAT_TEMPLATE


def _versions() -> dict[str, str]:
    found = {}
    for package in ("rtune", "torch", "transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def _dataset(name: str, local: bool) -> str:
    """Where a task's items came from, as the registry names it: local paths (globs), else `hub id[:config]`."""
    if local:
        return " + ".join(registry.get(name).local[0])
    source = registry.hub_source(name)
    return f"{source.id}:{source.config}" if source.config else source.id


def _encoding(style: PromptStyle) -> dict:
    """How prompts became tokens under the protocol (see `prompts`)."""
    bos = {None: "the tokenizer's, unless the text starts with it", True: "the tokenizer's, always", False: "none"}[
        style.add_special_tokens
    ]
    return {"protocol": style.protocol, "bos": bos, "system_turn": "dropped" if style.drop_system else "template's"}


def _task_configs(session: Session) -> dict:
    """Per task, the lm-eval task settings it reproduces."""
    configs, style, local = {}, session.style, session.data_dir is not None
    chat = style.chat
    for name in session.settings.tasks:
        common = {"task": name, "lm_eval_task": LM_EVAL_NAMES[name], "apply_chat_template": chat, **_encoding(style)}
        if name in MC_TASKS:
            task = MC_TASKS[name]
            configs[name] = {
                **common,
                "output_type": "multiple_choice",
                "metric_list": list(task.metrics),
                "dataset": _dataset(name, local),
                "target_delimiter": style.target_delimiter,
                "fewshot_delimiter": FEWSHOT_DELIMITER,
                "fewshot_split": "dev" if task.load_fewshot else None,
            }
        else:
            configs[name] = {
                **common,
                "output_type": "generate_until",
                "dataset": _dataset(name, local),
                "metric_list": ["exact_match"],
                "filters": ["strict-match", "flexible-extract"],
                "target_delimiter": TARGET_DELIMITER if style.protocol == "paper" else "",
                "generation_kwargs": {
                    "until": list(gsm8k.STOP),
                    "do_sample": False,
                    "max_gen_toks": gsm8k.MAX_NEW_TOKENS,
                },
                "fewshot_as_multiturn": chat,
            }
    return configs


def _run_config(session: Session) -> dict:
    s, chat = session.settings, session.style.chat
    template = session.tokenizer.chat_template if chat else None
    return {
        "model": s.model,
        "model_path": session.model_path,
        "model_fingerprint": session.fingerprint,
        "engine": "builtin",
        "protocol": s.protocol,
        "chat_template": chat,
        "chat_template_name": None if not chat else ("tulu" if template in (None, TULU_CHAT_TEMPLATE) else "model"),
        "fewshot_as_multiturn": chat,
        "num_fewshot": s.num_fewshot,
        "limit": s.limit,
        "limits": s.limits,
        "dtype": s.dtype,
        "batch_size": s.batch_size,
        "device": session.device,
        "seed": s.seed,
        "data_dir": str(session.data_dir) if session.data_dir else None,
        "tasks": list(s.tasks),
        "versions": _versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(settings: CoreEvalSettings, progress: Progress = SILENT, *, generator=None) -> CoreReport:
    """Evaluate, write `settings.out` and its `_samples.jsonl`, return the report.

    `generator` answers GSM8K instead of the model loaded through the generation engine (tests, a served copy).
    """
    started = time.time()
    check_output(settings.out)
    if settings.engine == "lm-eval":
        from rtune.evals.core.lm_eval import run_lm_eval

        document, samples = run_lm_eval(settings)
    else:
        session = Session(settings, progress, generator)
        units: list[UnitResult] = []
        for name in settings.tasks:  # scoring first, then generation, so only one model copy is loaded at a time
            if name in MC_TASKS:
                units += evaluate_mc_task(session, MC_TASKS[name])
        if any(name in GENERATIVE_TASKS for name in settings.tasks):
            units.append(gsm8k.evaluate_gsm8k(session))
        document = results_document(units, _run_config(session), _task_configs(session), time.time() - started)
        samples = [sample for unit in units for sample in unit.samples]
    atomic_write_json(settings.out, document)
    write_jsonl(samples_path(settings.out), samples)
    return CoreReport.from_document(document, settings.out)
