"""Cross-checks against lm-evaluation-harness itself (the optional `lm-eval` extra), offline, on our local copies.

lm-eval runs its own task YAMLs over our ARC-Easy/Challenge, OpenBookQA, PIQA, HellaSwag, MMLU and GSM8K
files (rewritten into the hub's field layout, `rtune.evals.core.lm_eval_tasks`); the builtin engine
runs ours. Per item: the same context and choices, the same acc and acc_norm, the same prediction, and
log-likelihoods within 1e-3; for GSM8K the same replies and extracted answers.

The paper's protocol is checked where today's lm-eval can still express it: plain prompts without BOS
(`add_bos_token=False`, what lm-eval 0.4.5's vLLM backend did for a non-Gemma model). Its chat-mode
" " before a choice has no switch in lm-eval since 0.4.6 (see test_core_protocols).
"""

from __future__ import annotations

import pytest

from rtune.evals.choice_scorer import ScoreRequest, encode_requests
from rtune.evals.core import CoreEvalSettings, run
from rtune.evals.core.lm_eval import normalise_lm_eval
from rtune.evals.core.lm_eval_tasks import write_tasks
from rtune.evals.core.report import samples_path
from rtune.io import read_jsonl

pytest.importorskip("lm_eval")

MC = ("arc_easy", "arc_challenge", "openbookqa", "piqa", "hellaswag")
ITEMS, MMLU_PER_SUBJECT, GSM8K_ITEMS = 100, 2, 20


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def samples(model: str, data, out, engine: str, **options) -> list[dict]:
    """Per-item samples of `rtune eval core` over the MC tasks (ITEMS each) and MMLU (MMLU_PER_SUBJECT a subject)."""
    rows = []
    for tasks, limit in ((MC, ITEMS), (("mmlu",), MMLU_PER_SUBJECT)):
        path = out / f"{engine}-{tasks[0]}.json"
        run(CoreEvalSettings(model=model, out=path, tasks=tasks, limit=limit, data_dir=data, engine=engine,
                             device="cpu", **options))
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
        raw = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},dtype=float32,add_bos_token=False",
                                      tasks=names, task_manager=manager, limit=limit, batch_size=8, device="cpu",
                                      bootstrap_iters=0)
        rows += normalise_lm_eval(raw)[1]
    return rows


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def agreement(ours: list[dict], theirs: list[dict]) -> dict[str, tuple[int, float]]:
    """Per task: (items, max |Δ log-likelihood|), after asserting every item agrees."""
    mine = {(s["task"], s["doc_id"]): s for s in ours if "logprobs" in s}
    lm = {(s["task"], s["doc_id"]): s for s in theirs if "logprobs" in s}
    assert mine.keys() == lm.keys()
    worst: dict[str, tuple[int, float]] = {}
    for key, a in mine.items():
        b = lm[key]
        assert (a["context"], a["continuations"]) == (b["context"], b["continuations"]), key
        assert (a["acc"], a.get("acc_norm")) == (b["acc"], b.get("acc_norm")), key
        assert argmax(a["logprobs"]) == argmax(b["logprobs"]), key
        delta = max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"], strict=True))
        assert delta < 1e-3, (key, delta)
        task = "mmlu" if key[0].startswith("mmlu") else key[0]
        n, most = worst.get(task, (0, 0.0))
        worst[task] = (n + 1, max(most, delta))
    print(worst)  # items and max |Δ| per task, for the record (pytest -s)
    assert {task: n for task, (n, _) in worst.items()} == {**dict.fromkeys(MC, ITEMS), "mmlu": 57 * MMLU_PER_SUBJECT}
    return worst


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_tiny_model_scores_as_lm_eval_does(tiny_model_dir, shared_data, tmp_path, chat):
    options = dict(protocol="lm-eval", chat_template=chat)
    agreement(samples(str(tiny_model_dir), shared_data, tmp_path, "builtin", **options),
              samples(str(tiny_model_dir), shared_data, tmp_path, "lm-eval", **options))


def test_tiny_model_under_the_paper_protocol_scores_as_lm_eval_without_bos(tiny_model_dir, shared_data, tmp_path):
    ours = samples(str(tiny_model_dir), shared_data, tmp_path, "builtin", protocol="paper", chat_template=False)
    agreement(ours, lm_eval_paper_plain(str(tiny_model_dir), shared_data, tmp_path / "tasks"))


def gsm8k_agreement(model: str, data, out, **options) -> int:
    """GSM8K through both engines: the same reply, strict and flexible answer per problem; problems compared."""
    runs = {}
    for engine in ("builtin", "lm-eval"):
        path = out / f"gsm8k-{engine}.json"
        run(CoreEvalSettings(model=model, out=path, tasks=("gsm8k",), limit=GSM8K_ITEMS, data_dir=data, engine=engine,
                             protocol="lm-eval", device="cpu", **options))
        runs[engine] = read_jsonl(samples_path(path))
    theirs = {(s["doc_id"], s["filter"]): s for s in runs["lm-eval"]}
    for ours in runs["builtin"]:
        strict, flexible = theirs[(ours["doc_id"], "strict-match")], theirs[(ours["doc_id"], "flexible-extract")]
        assert ours["reply"] == strict["reply"], ours["doc_id"]
        assert (ours["strict"], ours["flexible"]) == (strict["filtered_resps"][0], flexible["filtered_resps"][0])
        assert ours["exact_match,strict-match"] == strict["exact_match"]
    return len(runs["builtin"])


def test_tiny_model_gsm8k_answers_as_lm_eval(tiny_model_dir, shared_data, tmp_path):
    """One exemplar: the tiny model reads 1,024 tokens."""
    assert gsm8k_agreement(str(tiny_model_dir), shared_data, tmp_path, chat_template=False, num_fewshot=1) \
        == GSM8K_ITEMS


@pytest.mark.slow
def test_gemma_scores_as_lm_eval_does(shared_data, tmp_path):
    """gemma-3-270m has no chat template: plain prompts, where both protocols give it a BOS (checked token by token)."""
    from rtune.models import load_tokenizer, prepare_model

    model = prepare_model("gemma-3-270m")
    ours = samples(model, shared_data, tmp_path, "builtin", protocol="paper")
    agreement(ours, samples(model, shared_data, tmp_path, "lm-eval"))
    tokenizer = load_tokenizer(model)
    requests = [ScoreRequest(s["context"], tuple(s["continuations"])) for s in ours]
    assert encode_requests(tokenizer, requests, add_special_tokens=True) == encode_requests(tokenizer, requests)


@pytest.mark.slow
def test_gemma_gsm8k_answers_as_lm_eval(shared_data, tmp_path):
    from rtune.models import prepare_model

    assert gsm8k_agreement(prepare_model("gemma-3-270m"), shared_data, tmp_path) == GSM8K_ITEMS
