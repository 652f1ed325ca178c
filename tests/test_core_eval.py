"""`rtune eval core` end to end on the tiny model and the real data: output shape, typed report, resume, plain vs chat,
GSM8K wiring."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_cli
from rtune.evals.core import CoreEvalSettings, CoreReport, multiple_choice, run
from rtune.evals.core.report import samples_path
from rtune.evals.core.session import Session
from rtune.generation import GenerationResult
from rtune.io import read_jsonl


class ScriptedGenerator:
    """Answers every GSM8K problem with '… The final answer is 18' and counts the requests."""

    fingerprint = "scripted"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        self.requests += requests
        return [
            GenerationResult(
                text="9 * 2 = 18. The final answer is 18", finish_reason="stop", prompt_tokens=1, completion_tokens=1
            )
            for _ in requests
        ]


def settings(model_dir, data_dir, out, **overrides) -> CoreEvalSettings:
    base = dict(
        model=str(model_dir), tasks=("arc_easy", "piqa", "mmlu", "gsm8k"), data_dir=str(data_dir), limit=2, out=out
    )
    return CoreEvalSettings(**(base | overrides))


def read_document(out) -> dict:
    return json.loads(out.read_text())


def test_results_shape_samples_and_resume(tiny_model_dir, shared_data, tmp_path, monkeypatch):
    out = tmp_path / "core.json"
    generator = ScriptedGenerator()
    report = run(settings(tiny_model_dir, shared_data, out), generator=generator)
    document = read_document(out)

    assert CoreReport.load(out) == report
    results = document["results"]
    for task in ("arc_easy", "piqa"):
        assert set(results[task]) >= {
            "acc",
            "acc_stderr",
            "acc_norm",
            "acc_norm_stderr",
            "acc,none",
            "acc_norm_stderr,none",
        }
    assert (
        set(results["mmlu"]) >= {"acc", "acc_stderr"}
        and "mmlu_stem" in document["groups"]
        and "mmlu_anatomy" in results
    )
    assert document["group_subtasks"]["mmlu_stem"][0] == "mmlu_abstract_algebra"
    assert results["gsm8k"]["exact_match"] == 0.5  # the scripted 18 is right for problem 0, not for problem 1 (3)
    assert results["gsm8k"]["exact_match,flexible-extract"] == 0.5
    assert document["n-samples"]["arc_easy"] == {"original": 2376, "effective": 2}
    assert document["n-samples"]["mmlu_anatomy"] == {"original": 135, "effective": 2}
    assert document["n-shot"] == {**{name: 0 for name in document["n-shot"] if name != "gsm8k"}, "gsm8k": 8}
    config = document["config"]
    assert (config["chat_template"], config["chat_template_name"], config["limit"], config["dtype"]) == (
        True,
        "tulu",
        2,
        "float32",
    )
    assert config["versions"]["transformers"] and config["model_fingerprint"]

    samples = read_jsonl(samples_path(out))
    assert len(samples) == 2 + 2 + 57 * 2 + 2
    arc = next(s for s in samples if s["task"] == "arc_easy")
    assert arc["context"].startswith("<|user|>\nQuestion: ") and arc["context"].endswith("\n<|assistant|>\n")
    assert len(arc["logprobs"]) == 4 and arc["acc"] in (0.0, 1.0)
    assert len(generator.requests) == 2 and len(generator.requests[0].messages) == 17  # 8 shots as turns + the problem

    # A rerun of the same command loads every finished unit instead of computing it.
    monkeypatch.setattr(Session, "scorer", property(lambda self: pytest.fail("rescored a finished unit")))
    run(settings(tiny_model_dir, shared_data, out), generator=ScriptedGenerator())
    assert read_document(out)["results"] == document["results"]


def test_library_run_returns_the_typed_report(tiny_model_dir, shared_data, tmp_path):
    out = tmp_path / "typed.json"
    report = run(settings(tiny_model_dir, shared_data, out, tasks="arc_easy,mmlu,gsm8k"), generator=ScriptedGenerator())
    results = read_document(out)["results"]

    assert (report.document, report.samples) == (out, samples_path(out)) and report.samples.exists()
    assert (report.engine, report.chat_template, report.n_shot["gsm8k"]) == ("builtin", True, 8)
    arc = report.results["arc_easy"]
    assert (arc.kind, arc.n, arc.exact_match) == ("task", 2, None)
    assert (arc.acc.value, arc.acc.stderr) == (results["arc_easy"]["acc"], results["arc_easy"]["acc_stderr"])
    assert (arc.acc_norm.value, arc.acc_norm.stderr) == (
        results["arc_easy"]["acc_norm"],
        results["arc_easy"]["acc_norm_stderr"],
    )
    mmlu, stem, anatomy = report.results["mmlu"], report.results["mmlu_stem"], report.results["mmlu_anatomy"]
    assert (mmlu.kind, mmlu.n, mmlu.acc.value, mmlu.acc_norm) == ("group", 57 * 2, results["mmlu"]["acc"], None)
    assert (stem.kind, stem.n, anatomy.kind, anatomy.n) == ("group", 19 * 2, "subtask", 2)
    gsm = report.results["gsm8k"]
    assert (gsm.n, gsm.acc, gsm.exact_match.value, gsm.exact_match_flexible.value) == (2, None, 0.5, 0.5)
    assert gsm.exact_match.stderr == results["gsm8k"]["exact_match_stderr"]
    assert list(report.headline) == [
        "mmlu",
        "mmlu_humanities",
        "mmlu_other",
        "mmlu_social_sciences",
        "mmlu_stem",
        "arc_easy",
        "gsm8k",
    ]
    assert CoreReport.load(out) == report and CoreReport.model_validate_json(report.model_dump_json()) == report


def test_gsm8k_shots_follow_num_fewshot_and_plain_mode_sends_text(tiny_model_dir, shared_data, tmp_path):
    generator = ScriptedGenerator()
    out = tmp_path / "g.json"
    run(
        settings(tiny_model_dir, shared_data, out, tasks=("gsm8k",), num_fewshot=2, chat_template=False),
        generator=generator,
    )
    document = read_document(out)
    assert document["n-shot"]["gsm8k"] == 2 and document["config"]["chat_template"] is False
    prompt = generator.requests[0].prompt
    assert prompt.count("Given the following problem") == 3 and prompt.endswith("is the response to the problem.\n")


def test_cli_plain_prompts_and_one_line_errors(tiny_model_dir, shared_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "plain.json"
    code, _, _ = run_cli(
        monkeypatch,
        capsys,
        "eval",
        "core",
        "--model",
        str(tiny_model_dir),
        "--tasks",
        "arc_challenge,openbookqa",
        "--limit",
        "3",
        "--data-dir",
        str(shared_data),
        "--out",
        str(out),
        "--no-chat-template",
    )
    assert code == 0
    document = json.loads(out.read_text())
    assert document["config"]["chat_template"] is False and document["n-samples"]["openbookqa"]["effective"] == 3
    sample = read_jsonl(samples_path(out))[0]
    assert sample["context"].startswith("Question: ") and sample["continuations"][0].startswith(" ")

    code, _, err = run_cli(
        monkeypatch, capsys, "eval", "core", "--model", str(tiny_model_dir), "--tasks", "arc_medium", "--out", str(out)
    )
    assert code == 2
    assert "unknown task(s) arc_medium" in err and "Traceback" not in err


def test_gsm8k_through_the_generation_engine(tiny_model_dir, shared_data, tmp_path):
    run(settings(tiny_model_dir, shared_data, tmp_path / "gen.json", tasks=("gsm8k",), limit=1, num_fewshot=1))
    document = read_document(tmp_path / "gen.json")
    [sample] = read_jsonl(samples_path(tmp_path / "gen.json"))
    assert sample["messages"][0]["content"].startswith("Given the following problem") and isinstance(
        sample["reply"], str
    )
    assert document["results"]["gsm8k"]["exact_match"] in (0.0, 1.0)
    assert (tmp_path / "gen.parts" / "generation.sqlite").exists()


def test_a_killed_unit_resumes_from_its_partial_file(tiny_model_dir, shared_data, tmp_path, monkeypatch):
    from rtune.evals.choice_scorer import ChoiceScorer

    monkeypatch.setattr(multiple_choice, "SCORE_CHUNK", 2)
    real_score, scored = ChoiceScorer.score, []

    def score_then_die(self, requests, progress=None):
        if len(scored) == 2:
            raise KeyboardInterrupt
        scored.append(len(requests))
        return real_score(self, requests, progress)

    def score_and_count(self, requests, progress=None):
        scored.append(len(requests))
        return real_score(self, requests, progress)

    monkeypatch.setattr(ChoiceScorer, "score", score_then_die)
    piqa = dict(tasks=("piqa",), limit=6)
    with pytest.raises(KeyboardInterrupt):
        run(settings(tiny_model_dir, shared_data, tmp_path / "a.json", **piqa))
    assert len(read_jsonl(tmp_path / "a.parts" / "piqa.partial.jsonl")) == 4

    monkeypatch.setattr(ChoiceScorer, "score", score_and_count)
    run(settings(tiny_model_dir, shared_data, tmp_path / "a.json", **piqa))
    assert scored == [2, 2, 2] and not (tmp_path / "a.parts" / "piqa.partial.jsonl").exists()
    run(settings(tiny_model_dir, shared_data, tmp_path / "b.json", **piqa))
    resumed, fresh = read_document(tmp_path / "a.json"), read_document(tmp_path / "b.json")
    assert resumed["results"]["piqa"] == fresh["results"]["piqa"]
    logprobs = [
        [lp for s in read_jsonl(samples_path(tmp_path / f"{name}.json")) for lp in s["logprobs"]] for name in "ab"
    ]
    assert logprobs[0] == pytest.approx(logprobs[1], abs=1e-4)
