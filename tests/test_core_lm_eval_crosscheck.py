"""Cross-checks against lm-evaluation-harness itself (the optional `lm-eval` extra), offline, on our local copies.

lm-eval runs its own task YAMLs over our ARC-Easy/Challenge, OpenBookQA, PIQA, HellaSwag, MMLU and GSM8K
files (rewritten into the hub's field layout, `rtune.evals.core.lm_eval_tasks`); the builtin engine
runs ours, both in float64. Per item: the same context and choices, the same acc and acc_norm, the same
prediction, and log-likelihoods within 1e-5. (In float32 another batch layout moves a short choice after a long
context by up to 1.3e-3 on some CPUs, which would hide a real difference of that size.) For GSM8K, in float32:
the same replies and extracted answers.

The paper's protocol is checked where today's lm-eval can still express it: plain prompts without BOS
(`add_bos_token=False`, what lm-eval 0.4.5's vLLM backend did for a non-Gemma model). Its chat-mode
" " before a choice has no switch in lm-eval since 0.4.6 (see test_core_protocols).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from rtune.evals.choice_scorer import ScoreRequest, encode_requests
from rtune.evals.core import CoreEvalSettings, run
from rtune.evals.core.lm_eval import agreement, normalise_lm_eval
from rtune.evals.core.lm_eval_tasks import write_tasks
from rtune.evals.core.report import samples_path
from rtune.io import read_jsonl

pytest.importorskip("lm_eval")

MC = ("arc_easy", "arc_challenge", "openbookqa", "piqa", "hellaswag")
ITEMS, MMLU_PER_SUBJECT, GSM8K_ITEMS = 100, 2, 20
TOLERANCE = 1e-5  # float64 on both sides: 1e-12 on most tasks, 1.4e-7 at most (gemma, OpenBookQA)
# gemma through lm-eval costs minutes per 100 items on a CPU (full-vocabulary log-softmax at every position of
# every choice; 8-shot GSM8K answers of up to 256 tokens): CI checks 40 items a task, one MMLU question a
# subject and 5 GSM8K problems (the tiny model covers 100, 2 and 20); RTUNE_CROSSCHECK_FULL=1 runs those on gemma.
FULL = os.environ.get("RTUNE_CROSSCHECK_FULL") == "1"
GEMMA_ITEMS, GEMMA_MMLU_PER_SUBJECT, GEMMA_GSM8K_ITEMS = (ITEMS, MMLU_PER_SUBJECT, GSM8K_ITEMS) if FULL else (40, 1, 5)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model reading 4,096 tokens (rotary positions: the same weights), so no MMLU prompt is cut.

    A prompt longer than the window is cut per choice by lm-eval and once for all choices by our scorer
    (test_core_scoring pins where the two agree); the 1,024-token tiny model would cut one of these.
    """
    folder = tmp_path_factory.mktemp("tiny-4k")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 4096}))
    return str(folder)


def samples(model: str, data, out, engine: str, items=ITEMS, per_subject=MMLU_PER_SUBJECT, **options) -> list[dict]:
    """Per-item samples of `rtune eval core` over the MC tasks (`items` each) and MMLU (`per_subject` a subject)."""
    rows = []
    for tasks, limit in ((MC, items), (("mmlu",), per_subject)):
        path = out / f"{engine}-{tasks[0]}.json"
        run(
            CoreEvalSettings(
                model=model,
                out=path,
                tasks=tasks,
                limit=limit,
                data_dir=data,
                engine=engine,
                device="cpu",
                dtype="float64",
                **options,
            )
        )
        rows += read_jsonl(samples_path(path))
    return rows


def lm_eval_paper_plain(model: str, data, folder) -> list[dict]:
    """lm-eval on plain prompts without BOS: the paper's protocol for a non-Gemma model."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    rows = []
    for tasks, limit in ((MC, ITEMS), (("mmlu",), MMLU_PER_SUBJECT)):
        names = write_tasks(list(tasks), data, folder / tasks[0])
        manager = TaskManager(include_path=str(folder / tasks[0]), include_defaults=False)
        raw = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={model},dtype=float64,add_bos_token=False",
            tasks=names,
            task_manager=manager,
            limit=limit,
            batch_size=8,
            device="cpu",
            bootstrap_iters=0,
        )
        rows += normalise_lm_eval(raw)[1]
    return rows


def check(ours: list[dict], theirs: list[dict], items=ITEMS, per_subject=MMLU_PER_SUBJECT) -> None:
    """Every item of every task agrees (prompt, acc and acc_norm, prediction, log-likelihoods)."""
    found = agreement(ours, theirs, tolerance=TOLERANCE)
    print({task: (a.items, a.max_abs_delta) for task, a in found.items()})  # for the record (pytest -s)
    assert {task: a.items for task, a in found.items()} == {**dict.fromkeys(MC, items), "mmlu": 57 * per_subject}
    for task, a in found.items():
        assert a.items == a.same_prompt == a.same_scores == a.same_prediction == a.within, (task, a)


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_tiny_model_scores_as_lm_eval_does(tiny, shared_data, tmp_path, chat):
    options = dict(protocol="lm-eval", chat_template=chat)
    check(
        samples(tiny, shared_data, tmp_path, "builtin", **options),
        samples(tiny, shared_data, tmp_path, "lm-eval", **options),
    )


def test_tiny_model_under_the_paper_protocol_scores_as_lm_eval_without_bos(tiny, shared_data, tmp_path):
    ours = samples(tiny, shared_data, tmp_path, "builtin", protocol="paper", chat_template=False)
    check(ours, lm_eval_paper_plain(tiny, shared_data, tmp_path / "tasks"))


def gsm8k_agreement(model: str, data, out, items=GSM8K_ITEMS, **options) -> int:
    """GSM8K through both engines: the same reply, strict and flexible answer per problem; problems compared."""
    runs = {}
    for engine in ("builtin", "lm-eval"):
        path = out / f"gsm8k-{engine}.json"
        run(
            CoreEvalSettings(
                model=model,
                out=path,
                tasks=("gsm8k",),
                limit=items,
                data_dir=data,
                engine=engine,
                protocol="lm-eval",
                device="cpu",
                **options,
            )
        )
        runs[engine] = read_jsonl(samples_path(path))
    theirs = {(s["doc_id"], s["filter"]): s for s in runs["lm-eval"]}
    for ours in runs["builtin"]:
        strict, flexible = theirs[(ours["doc_id"], "strict-match")], theirs[(ours["doc_id"], "flexible-extract")]
        assert ours["reply"] == strict["reply"], ours["doc_id"]
        assert (ours["strict"], ours["flexible"]) == (strict["filtered_resps"][0], flexible["filtered_resps"][0])
        assert ours["exact_match,strict-match"] == strict["exact_match"]
    return len(runs["builtin"])


def test_tiny_model_gsm8k_answers_as_lm_eval(tiny, shared_data, tmp_path):
    """One exemplar keeps it quick; a random model's replies are noise, compared character by character."""
    assert gsm8k_agreement(tiny, shared_data, tmp_path, chat_template=False, num_fewshot=1) == GSM8K_ITEMS


@pytest.mark.slow
def test_gemma_scores_as_lm_eval_does(shared_data, tmp_path):
    """gemma-3-270m has no chat template: plain prompts, where both protocols give it a BOS (checked token by token)."""
    from rtune.models import load_tokenizer, prepare_model

    model = prepare_model("gemma-3-270m")
    # batch 4: lm-eval holds float64 log-softmaxes over 262k tokens at every position (12.9 GB at batch 8 on MMLU)
    size = {"items": GEMMA_ITEMS, "per_subject": GEMMA_MMLU_PER_SUBJECT}
    ours = samples(model, shared_data, tmp_path, "builtin", protocol="paper", batch_size=4, **size)
    check(ours, samples(model, shared_data, tmp_path, "lm-eval", batch_size=4, **size), **size)
    tokenizer = load_tokenizer(model)
    requests = [ScoreRequest(s["context"], tuple(s["continuations"])) for s in ours]
    assert encode_requests(tokenizer, requests, add_special_tokens=True) == encode_requests(tokenizer, requests)


@pytest.mark.slow
def test_gemma_gsm8k_answers_as_lm_eval(shared_data, tmp_path):
    from rtune.models import prepare_model

    model = prepare_model("gemma-3-270m")
    assert gsm8k_agreement(model, shared_data, tmp_path, items=GEMMA_GSM8K_ITEMS) == GEMMA_GSM8K_ITEMS


def test_lm_eval_engine_picks_the_device_as_the_builtin_one_does(tiny, shared_data, tmp_path):
    """No --device: the GPU when there is one, else the CPU (lm-eval alone would ask for cuda); timed like ours."""
    out = tmp_path / "auto.json"
    run(CoreEvalSettings(model=tiny, out=out, tasks=("arc_easy",), limit=3, data_dir=shared_data, engine="lm-eval"))
    assert len(read_jsonl(samples_path(out))) == 3
    assert json.loads(out.read_text())["total_evaluation_time_seconds"] > 0
