"""Response refinement: marker extraction, fallback to the original, and `rtune data refine` end to end."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_cli
from openai_server import OpenAIServer, Reply
from rtune.data.records import Record
from rtune.data.refine import MARKER, apply_results, extract_refined, refine_request
from rtune.generation import DecodingParams, GenerationResult


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Notes: too long.\nRefined response: Short and clear.\n", "Short and clear."),
        ("Notes.\nREFINED RESPONSE:\n\n1. One\n2. Two", "1. One\n2. Two"),
        (
            "refined response: first\nRefined response: second",
            "first\nRefined response: second",
        ),  # the first marker counts
        ("I would change the tone.", None),
        ("Refined response:   \n", None),
    ],
)
def test_extraction_takes_the_text_after_the_first_marker(text, expected):
    assert extract_refined(text) == expected


def _record(i: int) -> Record:
    return Record(
        id=f"r{i}", prompt=f"Question {i}? Use {{braces}}.", completion=f"answer {i}", source="test", meta={"k": i}
    )


def _result(text: str, finish: str = "stop") -> GenerationResult:
    return GenerationResult(text=text, finish_reason=finish, prompt_tokens=1, completion_tokens=1)


def test_fallback_keeps_the_original_and_reports_why():
    records = [_record(i) for i in range(4)]
    results = [
        _result("ok.\nRefined response: Better answer 0."),
        _result("no marker here"),
        _result("Refined response: half an ans", "length"),
        _result("Refined response: answer 3"),
    ]
    report = apply_results(records, results, "openai:refiner")
    assert [r.completion for r in report.records] == ["Better answer 0.", "answer 1", "answer 2", "answer 3"]
    assert report.extracted == 2 and report.changed == 1
    assert report.extraction_rate == 0.25  # the paper's: completions that changed (answer 3 came back the same)
    assert report.no_marker == ["r1"] and report.cut_off == ["r2"]
    assert report.records[0].meta == {
        "k": 0,
        "source_completion": "answer 0",
        "refined_by": "openai:refiner",
        "refined": True,
    }
    assert report.records[1].meta["refined"] is False and report.records[1].prompt == records[1].prompt


def test_the_prompt_holds_request_and_response_verbatim():
    request = refine_request(_record(7), DecodingParams(max_new_tokens=99))
    content = request.messages[0]["content"]
    assert "Question 7? Use {braces}." in content and "answer 7" in content and MARKER in content
    assert request.messages[0]["role"] == "user" and request.params.max_new_tokens == 99


def test_refine_command_end_to_end_and_resumable(monkeypatch, capsys, tmp_path):
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps(_record(i).model_dump()) + "\n" for i in range(6)))

    def refiner(request):
        content = request.body["messages"][0]["content"]
        number = int(content.split("=== Assistant reply ===\nanswer ")[1].split("\n")[0])
        return (
            Reply("No marker, sorry.")
            if number == 4
            else Reply(f"Clearer wording.\nRefined response: Answer {number}, refined.")
        )

    out = tmp_path / "run" / "refined.jsonl"
    with OpenAIServer(responder=refiner) as server:
        spec = f"openai:refiner@{server.base_url}"
        code, _, err = run_cli(monkeypatch, capsys, "data", "refine", str(source), "--refiner", spec, "--out", str(out))
        assert code == 0, err
        assert "extraction rate 83.3%" in err and "6 generated, 0 from cache" in err
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["completion"] for r in rows] == [
            "Answer 0, refined.",
            "Answer 1, refined.",
            "Answer 2, refined.",
            "Answer 3, refined.",
            "answer 4",
            "Answer 5, refined.",
        ]
        assert rows[4]["meta"]["refined"] is False and rows[0]["meta"]["source_completion"] == "answer 0"
        served = len(server.requests)
        code, _, err = run_cli(monkeypatch, capsys, "data", "refine", str(source), "--refiner", spec, "--out", str(out))
        assert code == 0 and "0 generated, 6 from cache" in err and len(server.requests) == served
    assert (tmp_path / "run" / "generation_cache.sqlite").exists()
