"""`--protocol paper` (lm-eval 0.4.5 as the paper ran it) against `--protocol lm-eval` (lm-eval today): prompts,
BOS, GSM8K, what the result files record, and the paper's headline (acc, acc_norm beside, one ARC column)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rtune.errors import RtuneError
from rtune.evals.choice_scorer import ScoreRequest, encode_requests
from rtune.evals.core import CoreEvalSettings, CoreReport, run
from rtune.evals.core.prompts import mc_request, prompt_style
from rtune.evals.core.report import samples_path
from rtune.evals.core.tasks import MC_TASKS
from rtune.generation import GenerationRequest, GenerationResult
from rtune.generation.render import encode_request
from rtune.io import read_jsonl
from rtune.pipeline.kinds.core import section


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from rtune.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_mc_prompts_under_each_protocol(shared_data, tokenizer):
    item = MC_TASKS["mmlu"].load(shared_data)[0]
    description = MC_TASKS["mmlu"].description(item.subject)
    paper, today = prompt_style(tokenizer, True, "paper", "llama"), prompt_style(tokenizer, True, "lm-eval", "llama")
    # paper: " " before each choice; the Tulu template had no system turn, so MMLU's description is gone
    request = mc_request(item, [], description, paper)
    assert request == ScoreRequest(f"<|user|>\n{item.text}\n<|assistant|>\n", (" A", " B", " C", " D"))
    # today: nothing before each choice; the description is a system turn
    request = mc_request(item, [], description, today)
    assert request.context == f"<|system|>\n{description}\n<|user|>\n{item.text}\n<|assistant|>\n"
    assert request.continuations == ("A", "B", "C", "D")
    # plain prompts are the same text under both
    plain = [
        mc_request(item, [], description, prompt_style(tokenizer, False, protocol, "llama"))
        for protocol in ("paper", "lm-eval")
    ]
    assert plain[0] == plain[1] == ScoreRequest(description + item.text, (" A", " B", " C", " D"))


def test_bos_rule(tokenizer):
    """paper: the tokenizer's special tokens for Gemma only, whatever the text holds; lm-eval: BOS exactly once."""
    assert prompt_style(tokenizer, False, "paper", "llama").add_special_tokens is False
    assert prompt_style(tokenizer, False, "paper", "gemma3_text").add_special_tokens is True
    assert prompt_style(tokenizer, False, "lm-eval", "gemma3_text").add_special_tokens is None
    bos = tokenizer.bos_token_id
    plain, with_bos = ScoreRequest("Question: hi\nAnswer:", (" yes",)), ScoreRequest("<bos>Question: hi", (" yes",))
    contexts = {
        flag: [r.context for r in encode_requests(tokenizer, [plain, with_bos], add_special_tokens=flag)]
        for flag in (None, True, False)
    }
    assert [c.count(bos) for c in contexts[None]] == [1, 1]
    assert [c.count(bos) for c in contexts[True]] == [1, 2]  # a template's <bos> and the tokenizer's: lm-eval 0.4.5
    assert [c.count(bos) for c in contexts[False]] == [0, 1]
    assert contexts[False][0] == contexts[None][0][1:]
    # generation honours the same rule; a request leaving it unset dumps (and caches) as before
    ids = {
        flag: encode_request(tokenizer, GenerationRequest(prompt="hi", add_special_tokens=flag))
        for flag in (None, False)
    }
    assert ids[None] == [bos, *ids[False]]
    assert "add_special_tokens" not in GenerationRequest(prompt="hi").model_dump()
    assert GenerationRequest(prompt="hi", add_special_tokens=False).model_dump()["add_special_tokens"] is False


class Recorder:
    fingerprint = "recorder"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        self.requests += requests
        return [
            GenerationResult(text="The final answer is 18", finish_reason="stop", prompt_tokens=1, completion_tokens=1)
            for _ in requests
        ]


def core(model_dir, data_dir, out, **overrides) -> CoreEvalSettings:
    return CoreEvalSettings(
        **(
            {
                "model": str(model_dir),
                "data_dir": str(data_dir),
                "out": out,
                "limit": 3,
                "tasks": ("arc_easy", "arc_challenge", "gsm8k"),
                "num_fewshot": 1,
            }
            | overrides
        )
    )


def test_each_result_file_records_its_protocol_and_scores_under_it(tiny_model_dir, shared_data, tmp_path):
    generators, reports, logprobs = {}, {}, {}
    for protocol in ("paper", "lm-eval"):
        generators[protocol] = Recorder()
        reports[protocol] = run(
            core(tiny_model_dir, shared_data, tmp_path / "core.json", protocol=protocol), generator=generators[protocol]
        )
        document = json.loads((tmp_path / "core.json").read_text())
        assert document["config"]["protocol"] == protocol == reports[protocol].protocol
        configs = document["configs"]
        assert configs["arc_easy"]["target_delimiter"] == (" " if protocol == "paper" else "")
        assert configs["arc_easy"]["bos"] == (
            "none" if protocol == "paper" else "the tokenizer's, unless the text starts with it"
        )
        samples = read_jsonl(samples_path(tmp_path / "core.json"))
        arc = next(s for s in samples if s["task"] == "arc_easy")
        assert arc["continuations"][0].startswith(" ") == (protocol == "paper")
        logprobs[protocol] = arc["logprobs"]
        # the second run reuses nothing of the first (the protocol is in every unit's key)
        assert len(generators[protocol].requests) == 3
    assert all(abs(a - b) > 1e-3 for a, b in zip(logprobs["paper"], logprobs["lm-eval"], strict=True))
    for protocol, generator in generators.items():
        assert all(r.add_special_tokens is (False if protocol == "paper" else None) for r in generator.requests)


def test_gsm8k_plain_prompt_of_the_papers_time_has_a_space_before_each_answer(tiny_model_dir, shared_data, tmp_path):
    prompts = {}
    for protocol in ("paper", "lm-eval"):
        generator = Recorder()
        run(
            core(
                tiny_model_dir,
                shared_data,
                tmp_path / f"{protocol}.json",
                protocol=protocol,
                tasks=("gsm8k",),
                chat_template=False,
            ),
            generator=generator,
        )
        prompts[protocol] = generator.requests[0].prompt
    assert "the problem.\n There are 15 trees" in prompts["paper"]  # task version 3.0: target delimiter " "
    assert "the problem.\nThere are 15 trees" in prompts["lm-eval"]  # version 4.0: ""
    assert prompts["paper"].replace("\n There are", "\nThere are") == prompts["lm-eval"]


def test_the_headline_is_acc_with_acc_norm_beside_and_one_arc(tiny_model_dir, shared_data, tmp_path):
    report = run(core(tiny_model_dir, shared_data, tmp_path / "h.json", tasks="arc_easy,arc_challenge,mmlu", limit=2))
    document = json.loads((tmp_path / "h.json").read_text())
    arc, easy, challenge = (report.results[name] for name in ("ai2_arc", "arc_easy", "arc_challenge"))
    assert (arc.kind, arc.n, easy.kind, challenge.kind) == ("group", 4, "task", "task")
    assert arc.acc.value == pytest.approx((easy.acc.value * 2 + challenge.acc.value * 2) / 4)
    assert document["group_subtasks"]["ai2_arc"] == ["arc_easy", "arc_challenge"]
    assert "ai2_arc" in report.headline and "arc_easy" in report.headline and "mmlu_anatomy" not in report.headline
    assert CoreReport.load(tmp_path / "h.json") == report

    table = section([SimpleNamespace(cell="m/base", result=report)])
    cells = dict(zip(table.headers, table.rows[0], strict=True))
    assert (
        cells["ai2_arc"].startswith(f"{arc.acc.value:.3f} [")
        and f"(acc_norm {arc.acc_norm.value:.3f})" in cells["ai2_arc"]
    )
    assert "acc_norm" not in cells["mmlu"]  # MMLU reports acc only


def test_lm_eval_itself_runs_todays_protocol_only(tmp_path):
    with pytest.raises(RtuneError, match="--engine lm-eval runs lm-eval's own"):
        CoreEvalSettings(model="m", out=tmp_path / "o.json", engine="lm-eval", protocol="paper")
    assert CoreEvalSettings(model="m", out=tmp_path / "o.json", engine="lm-eval").protocol == "lm-eval"
    assert CoreEvalSettings(model="m", out=tmp_path / "o.json").protocol == "paper"


def test_float64_is_for_the_log_likelihood_tasks(tmp_path):
    with pytest.raises(RtuneError, match="float64 is for the log-likelihood tasks; GSM8K generates in float32"):
        CoreEvalSettings(model="m", out=tmp_path / "o.json", tasks="piqa,gsm8k", dtype="float64")
    assert CoreEvalSettings(model="m", out=tmp_path / "o.json", tasks="piqa,mmlu", dtype="float64").dtype == "float64"
