"""acc / acc_norm definitions, lm-eval's standard errors and MMLU grouping, and reading lm-eval's own output."""

from __future__ import annotations

import builtins
import math
import statistics

import pytest

from rtune.errors import RtuneError
from rtune.evals.choice_scorer import ChoiceScore
from rtune.evals.core.lm_eval import import_lm_eval, normalise_lm_eval
from rtune.evals.core.multiple_choice import mc_outcome
from rtune.evals.core.results import UnitResult, mean_stderr, mmlu_groups, pooled_stderr, results_document
from rtune.evals.core.tasks import MCItem


def test_acc_norm_divides_by_the_choice_length_in_characters():
    item = MCItem("t/0", "Q", ("ab", "abcdef", "abc"), gold=1)
    scores = [ChoiceScore(-2.0, False, 1), ChoiceScore(-3.0, False, 3), ChoiceScore(-2.4, False, 2)]
    # acc: argmax(-2.0, -3.0, -2.4) = 0; acc_norm: argmax(-2/2, -3/6, -2.4/3) = argmax(-1.0, -0.5, -0.8) = 1
    assert mc_outcome(item, scores) == (0, 1)
    # ties go to the first choice, as numpy's argmax
    assert mc_outcome(MCItem("t/1", "Q", ("a", "b"), 1), [ChoiceScore(-1.0, False, 1)] * 2) == (0, 0)


def test_stderr_is_the_sample_stderr_of_the_mean():
    values = [1.0, 0.0, 1.0, 1.0, 0.0]
    mean, stderr = mean_stderr(values)
    assert mean == 0.6 and stderr == pytest.approx(statistics.stdev(values) / math.sqrt(5))
    assert mean_stderr([1.0]) == (1.0, None)


def test_pooled_stderr_is_lm_eval_formula_and_close_to_the_concatenation():
    a, b = [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    sa, sb = mean_stderr(a)[1], mean_stderr(b)[1]
    expected = math.sqrt(((4 - 1) * sa**2 * 4 + (6 - 1) * sb**2 * 6) / (10 - 2) / 10)
    assert pooled_stderr([sa, sb], [4, 6]) == pytest.approx(expected)
    assert pooled_stderr([sa, sb], [4, 6]) == pytest.approx(mean_stderr(a + b)[1], rel=0.15)


def unit(name, values):
    return UnitResult(name, {"acc": values}, len(values), 0)


def test_mmlu_groups_weight_by_size():
    units = [
        unit("mmlu_abstract_algebra", [1.0, 0.0, 0.0, 0.0]),
        unit("mmlu_anatomy", [1.0, 1.0]),
        unit("mmlu_philosophy", [1.0, 0.0, 1.0]),
        unit("arc_easy", [1.0]),
    ]
    groups, tree = mmlu_groups(units)
    assert groups["mmlu_stem"]["acc"] == pytest.approx(3 / 6)
    assert groups["mmlu_humanities"]["acc"] == pytest.approx(2 / 3)
    assert groups["mmlu"]["acc"] == pytest.approx(5 / 9) and groups["mmlu"]["acc,none"] == groups["mmlu"]["acc"]
    assert tree == {
        "mmlu": ["mmlu_humanities", "mmlu_stem"],
        "mmlu_humanities": ["mmlu_philosophy"],
        "mmlu_stem": ["mmlu_abstract_algebra", "mmlu_anatomy"],
    }
    document = results_document(units, {"model": "m"}, {}, 1.0)
    assert document["results"]["arc_easy"]["acc"] == 1.0
    assert document["n-samples"]["arc_easy"] == {"original": 1, "effective": 1}
    assert list(document["results"])[0] == "mmlu"


LM_EVAL_OUTPUT = {
    "results": {
        "arc_easy": {
            "alias": "arc_easy",
            "acc,none": 0.58,
            "acc_stderr,none": 0.0101,
            "acc_norm,none": 0.55,
            "acc_norm_stderr,none": 0.0102,
        },
        "rtune_arc_challenge": {
            "alias": "rtune_arc_challenge",
            "acc,none": 0.28,
            "acc_stderr,none": 0.0131,
            "acc_norm,none": 0.31,
            "acc_norm_stderr,none": 0.0135,
        },
        "gsm8k_cot_llama": {
            "alias": "gsm8k_cot_llama",
            "exact_match,strict-match": 0.1,
            "exact_match_stderr,strict-match": 0.008,
            "exact_match,flexible-extract": 0.12,
            "exact_match_stderr,flexible-extract": "N/A",
        },
        "mmlu": {"alias": "mmlu", "acc,none": 0.26, "acc_stderr,none": 0.0037},
        "mmlu_anatomy": {"alias": "  - anatomy", "acc,none": 0.3, "acc_stderr,none": 0.04},
    },
    "groups": {"mmlu": {"alias": "mmlu", "acc,none": 0.26, "acc_stderr,none": 0.0037}},
    "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy"], "gsm8k_cot_llama": []},
    "configs": {"arc_easy": {"task": "arc_easy"}, "gsm8k_cot_llama": {"task": "gsm8k_cot_llama"}},
    "versions": {"arc_easy": 1.0, "gsm8k_cot_llama": 4.0},
    "n-shot": {"arc_easy": 0, "gsm8k_cot_llama": 8},
    "n-samples": {
        "arc_easy": {"original": 2376, "effective": 2376},
        "rtune_arc_challenge": {"original": 1172, "effective": 1172},
        "gsm8k_cot_llama": {"original": 1319, "effective": 1319},
    },
    "config": {"model": "hf", "model_args": "pretrained=/m,dtype=float32", "batch_size": 8, "limit": None},
    "samples": {
        "arc_easy": [
            {
                "doc_id": 0,
                "target": 0,
                "arguments": [["Question: q\nAnswer:", " a"], ["Question: q\nAnswer:", " bb"]],
                "filter": "none",
                "filtered_resps": [[-1.0, False], [-3.0, False]],
                "acc": 1.0,
                "acc_norm": 0.0,
            }
        ]
    },
    "lm_eval_version": "0.4.13",
    "chat_template": None,
    "fewshot_as_multiturn": False,
}


def test_lm_eval_output_is_normalised_to_our_shape():
    document, samples = normalise_lm_eval(LM_EVAL_OUTPUT)
    arc = document["results"]["arc_easy"]
    assert (arc["acc"], arc["acc_stderr"], arc["acc,none"], arc["acc_norm_stderr"]) == (0.58, 0.0101, 0.58, 0.0102)
    gsm = document["results"]["gsm8k"]  # renamed from gsm8k_cot_llama
    assert gsm["exact_match"] == 0.1 and gsm["exact_match,strict-match"] == 0.1
    assert gsm["exact_match_flexible-extract"] == 0.12 and gsm["exact_match_flexible-extract_stderr"] is None
    assert document["n-shot"]["gsm8k"] == 8 and document["groups"]["mmlu"]["acc"] == 0.26
    assert document["config"]["engine"] == "lm-eval" and document["config"]["model"] == "pretrained=/m,dtype=float32"
    assert samples == [
        {
            "task": "arc_easy",
            "doc_id": 0,
            "target": 0,
            "filter": "none",
            "filtered_resps": [[-1.0, False], [-3.0, False]],
            "acc": 1.0,
            "acc_norm": 0.0,
            "context": "Question: q\nAnswer:",
            "continuations": [" a", " bb"],
            "logprobs": [-1.0, -3.0],
        }
    ]
    # our local task names lose their prefix; ARC-Easy and ARC-Challenge also count as one ARC, by size
    assert document["results"]["arc_challenge"]["acc"] == 0.28
    arc = document["results"]["ai2_arc"]
    assert arc["acc"] == pytest.approx((0.58 * 2376 + 0.28 * 1172) / 3548) and arc["acc_norm_stderr"] > 0
    assert document["group_subtasks"]["ai2_arc"] == ["arc_easy", "arc_challenge"] and "ai2_arc" in document["groups"]


def test_missing_lm_eval_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_lm_eval(name, *args, **kwargs):
        if name == "lm_eval" or name.startswith("lm_eval."):
            raise ImportError("No module named 'lm_eval'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lm_eval)
    with pytest.raises(RtuneError, match=r"optional 'lm-eval' extra\): pip install 'lm-eval\[hf\]'"):
        import_lm_eval()


def test_agreement_counts_what_differs():
    from rtune.evals.core.lm_eval import agreement

    def sample(task, doc_id, logprobs, acc, context="Q:"):
        return {
            "task": task,
            "doc_id": doc_id,
            "context": context,
            "continuations": [" a", " b"],
            "logprobs": logprobs,
            "acc": acc,
            "acc_norm": acc,
        }

    ours = [
        sample("piqa", 0, [-1.0, -2.0], 1.0),
        sample("piqa", 1, [-400.0, -401.0], 0.0),
        sample("mmlu_anatomy", 0, [-1.0, -0.5], 0.0),
        sample("mmlu_virology", 0, [-3.0, -1.0], 1.0),
    ]
    theirs = [
        sample("piqa", 0, [-1.0004, -2.0], 1.0),
        sample("piqa", 1, [-400.003, -401.0], 0.0),
        sample("mmlu_anatomy", 0, [-1.0, -1.5], 1.0, context="Other"),
        sample("mmlu_virology", 0, [-3.0, -1.0], 1.0),
        {"task": "gsm8k", "doc_id": 0, "reply": "x"},
    ]
    found = agreement(ours, theirs)
    assert set(found) == {"piqa", "mmlu"}
    piqa, mmlu = found["piqa"], found["mmlu"]
    assert (piqa.items, piqa.same_prompt, piqa.same_prediction, piqa.within) == (2, 2, 2, 2)  # 3e-3 of 400: relative
    assert piqa.max_abs_delta == pytest.approx(0.003)
    assert (mmlu.items, mmlu.same_prompt, mmlu.same_scores, mmlu.same_prediction, mmlu.within) == (2, 1, 1, 1, 1)
