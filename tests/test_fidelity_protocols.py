"""File-driven protocols against the original tools: the request rtune sends equals the original template filled the
way just-eval and the RT repository fill it. The original texts are read from the shared data folder, never copied."""

from __future__ import annotations

import json
import re
import string

import pytest

from openai_server import OpenAIServer, Reply
from rtune.data.records import Record, read_records
from rtune.data.refine import PAPER_MAX_NEW_TOKENS, RefineSettings, load_refine_prompt, refine_request
from rtune.errors import RtuneError
from rtune.evals.safety import SafetyRun
from rtune.evals.safety import run as evaluate_safety
from rtune.evals.safety.sets import load_items
from rtune.generation import DecodingParams
from rtune.judges import aspects
from rtune.judges.aspects import AspectsSettings
from rtune.judges.prompts import ASPECTS
from rtune.judges.refusal import RefusalCase, make_refusal_judge

INSTRUCTION = "Explain {curly} braces, $dollars and ${candidate} in one line."  # placeholders' look-alikes inside
OUTPUT = "Use {{ and }} in str.format; $$ in string.Template. The end: ${instruction}."


def _protocol(shared_data, *parts: str):
    return shared_data.joinpath("protocols", *parts)


def _just_eval(template: str, instruction: str, output: str) -> str:
    """just-eval's `score_eval`: `Template(TEMPLATE).substitute(instruction=..., candidate=shorten(output))`, no cut."""
    return string.Template(template).substitute(instruction=instruction, candidate=output)


def _just_eval_answer(request) -> str:
    """A judge answering in just-eval's format: reasons, and scores as strings."""
    names = ("safety",) if '"safety"' in request.text else ASPECTS
    return "```\n" + json.dumps({name: {"reason": "fine", "score": "4"} for name in names}, indent=4) + "\n```"


def test_aspect_requests_equal_just_evals_templates_filled(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    multi = _protocol(shared_data, "just_eval", "multi_score.txt")
    safety = _protocol(shared_data, "just_eval", "safety_score.txt")
    rows = [
        {"id": "a", "instruction": INSTRUCTION, "output": OUTPUT, "category": "regular"},
        {"id": "b", "instruction": "How do I pick a lock?", "output": "I can't help.", "category": "safety"},
    ]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(rows))
    with OpenAIServer(responder=_just_eval_answer) as server:
        settings = AspectsSettings(
            outputs=outputs,
            judge=f"openai:judge@{server.base_url}",
            out=tmp_path / "out",
            template=multi,
            safety_template=safety,
            system_prompt="SYSTEM",
            bootstrap_samples=100,
        )
        report = aspects.run(settings)
        sent = {request.body["messages"][-1]["content"]: request.body for request in server.requests}
    expected = {
        _just_eval(multi.read_text(encoding="utf-8"), INSTRUCTION, OUTPUT): "regular",
        _just_eval(safety.read_text(encoding="utf-8"), rows[1]["instruction"], rows[1]["output"]): "safety",
    }
    assert set(sent) == set(expected)  # byte for byte, the original text (not stripped) with both slots filled
    for body in sent.values():
        assert body["messages"][0] == {"role": "system", "content": "SYSTEM"} and len(body["messages"]) == 2
        assert body["temperature"] == 0 and body["max_tokens"] == 1024  # just-eval's defaults
    assert report.n_scored == 2 and report.by_category["regular"].aspects["depth"].mean == 4
    assert report.by_category["safety"].aspects["safety"].mean == 4
    scores = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert {row["prompt_version"].split("@")[0] for row in scores} == {"file:multi_score.txt", "file:safety_score.txt"}
    assert report.prompt_version.startswith("aspects: file:multi_score.txt@") and "+system@" in report.prompt_version


def test_a_template_must_fill_just_evals_placeholders(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Rate ${instruction} only.")
    with pytest.raises(RtuneError, match=r"no \$\{candidate\} placeholder"):
        AspectsSettings(outputs="o.json", judge="openai:j", out=tmp_path, template=bad)
    bad.write_text("Rate ${instruction} and ${candidate} for ${judge}.")
    with pytest.raises(RtuneError, match=r"also has \$\{judge\}"):
        AspectsSettings(outputs="o.json", judge="openai:j", out=tmp_path, template=bad)


def _rt_label(request) -> str:
    response = re.search(r"<BEGIN MODEL RESPONSE>(.*)<END MODEL RESPONSE>", request.text, re.S).group(1)
    return (
        "Summary: it declines.\nThe response is [Refusal]"
        if "can't" in response
        else "Summary: it answers.\nThe response is [Compliance]"
    )


def test_refusal_judge_requests_equal_the_rt_repos_prompt_filled(shared_data, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    path = _protocol(shared_data, "response_tuning", "refusal_judge.txt")
    cases = [RefusalCase(INSTRUCTION, OUTPUT), RefusalCase("Help me hack.", "Sorry, I can't help with that.")]
    with OpenAIServer(responder=_rt_label) as server:
        judge = make_refusal_judge(f"openai:judge@{server.base_url}", prompt_file=path)
        verdicts = judge.judge(cases)
        sent = [request.body for request in server.requests]
    original = path.read_text(encoding="utf-8").strip()  # the script's REFUSAL_JUDGE_PROMPT is .strip()ped
    expected = [
        [{"role": "user", "content": original.format(prompt=case.request, model_output=case.response)}]
        for case in cases
    ]  # eval/*/run_eval.py: REFUSAL_JUDGE_PROMPT.format(prompt=..., model_output=...)
    # requests go out concurrently, so the server sees them in any order
    assert sorted((body["messages"] for body in sent), key=str) == sorted(expected, key=str)
    assert all(body["temperature"] == 0 and body["max_tokens"] == 2048 for body in sent)  # the paper's settings
    assert [v.label for v in verdicts] == ["compliance", "refusal"]
    assert judge.name.startswith("llm:") and ":file:refusal_judge.txt@" in judge.name
    with pytest.raises(RtuneError, match="needs an LLM judge"):
        make_refusal_judge("keyword", prompt_file=path)


def test_a_safety_run_records_the_judge_prompt_by_content(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    path = _protocol(shared_data, "response_tuning", "refusal_judge.txt")
    items = load_items(("xstest",), shared_data, 4, 0, {})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps([{"id": item.id, "instruction": item.prompt, "output": "Sure: here it is."} for item in items])
    )
    with OpenAIServer(responder=_rt_label) as server:
        settings = SafetyRun(
            out=tmp_path / "run",
            outputs=outputs,
            sets="xstest",
            limit=4,
            data_dir=shared_data,
            judge=f"openai:judge@{server.base_url}",
            judge_prompt=path,
            judge_retries=0,
        )
        summary = evaluate_safety(settings)
        contents = {request.body["messages"][0]["content"] for request in server.requests}
    original = path.read_text(encoding="utf-8").strip()
    assert contents == {original.format(prompt=item.prompt, model_output="Sure: here it is.") for item in items}
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["judge_prompt"] == settings.identity()["judge_prompt"]
    assert recorded["judge_prompt"].startswith("file:refusal_judge.txt@") and summary.unclassified == 0
    plain = SafetyRun(out=tmp_path / "other", outputs=outputs, judge="keyword").identity()
    assert "judge_prompt" not in plain  # runs made before the option resume unchanged
    with pytest.raises(RtuneError, match="needs an LLM judge"):
        SafetyRun(out=tmp_path / "x", outputs=outputs, judge="keyword", judge_prompt=path)


def test_refine_requests_equal_the_papers_prompt_filled(shared_data):
    path = _protocol(shared_data, "response_tuning", "refine_response.txt")
    record = Record(id="r", prompt=INSTRUCTION, completion=OUTPUT, source="test")
    request = refine_request(record, DecodingParams(max_new_tokens=PAPER_MAX_NEW_TOKENS), load_refine_prompt(path))
    original = path.read_text(encoding="utf-8").strip()  # RESPONSE_REFINE_PROMPT_TEMPLATE is .strip()ped
    assert request.messages == (
        {"role": "user", "content": original.format(user_request=INSTRUCTION, response=OUTPUT)},
    )
    assert request.params.temperature == 0 and request.params.max_new_tokens == 8192  # greedy, the paper's budget
    assert RefineSettings(file="f", refiner="openai:x", out="o").max_new_tokens == 8192


def _refiner(request) -> Reply:
    """The paper's marker twice (its rule keeps everything after the first), once missing, once with nothing after."""
    response = re.search(r"<BEGIN ASSISTANT RESPONSE>(.*)<END ASSISTANT RESPONSE>", request.text, re.S).group(1)
    if response == "answer 1":
        return Reply("I would reword it, but the original is fine.")
    if response == "answer 2":
        return Reply("Review.\nRefined response:")
    return Reply(f"Review: fine.\nRefined response: Better {response}.\nRefined Response: a second marker stays.")


def test_refine_command_with_the_papers_prompt_and_extraction(shared_data, tmp_path, monkeypatch, capsys):
    from cli_runner import run_cli

    monkeypatch.setenv("OPENAI_API_KEY", "test")
    source = tmp_path / "records.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                Record(id=f"r{i}", prompt=f"Question {i}?", completion=f"answer {i}", source="test").model_dump()
            )
            + "\n"
            for i in range(4)
        )
    )
    out = tmp_path / "refined.jsonl"
    path = _protocol(shared_data, "response_tuning", "refine_response.txt")
    with OpenAIServer(responder=_refiner) as server:
        code, _, err = run_cli(
            monkeypatch,
            capsys,
            "data",
            "refine",
            str(source),
            "--refiner",
            f"openai:refiner@{server.base_url}",
            "--out",
            str(out),
            "--prompt-file",
            str(path),
        )
        bodies = [request.body for request in server.requests]
    assert code == 0, err
    completions = [record.completion for record in read_records(out).records]
    assert completions == [
        "Better answer 0.\nRefined Response: a second marker stays.",
        "answer 1",
        "answer 2",
        "Better answer 3.\nRefined Response: a second marker stays.",
    ]
    assert "extraction rate 50.0%" in err  # the paper's rate: completions that changed, over all
    assert all(body["max_tokens"] == 8192 and body["temperature"] == 0 for body in bodies)
    assert all(body["messages"][0]["content"].startswith(path.read_text(encoding="utf-8")[:40]) for body in bodies)
