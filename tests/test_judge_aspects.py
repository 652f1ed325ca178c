"""Multi-aspect scoring: strict parsing, retries, per-category summaries, against a real 127.0.0.1 server."""

from __future__ import annotations

import json
import re

import pytest

from rtune.errors import RtuneError
from rtune.generation import GenerationCache, from_spec
from rtune.judges import aspects
from rtune.judges.aspect_summary import summarise_group
from rtune.judges.aspects import (
    LOG_FILE,
    AspectsReport,
    AspectsSettings,
    parse_scores,
    read_items,
    score_items,
    summarise,
)
from rtune.judges.caller import CACHE_FILE, JudgeCaller
from rtune.judges.prompts import ASPECTS

FIVE = {"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 4}


def _answer(scores: dict, rationale: str = "fine") -> str:
    return json.dumps({name: {"rationale": rationale, "score": score} for name, score in scores.items()})


# -- parsing --------------------------------------------------------------------------------------


def test_valid_json_is_read_with_rationales():
    parsed = parse_scores(_answer(FIVE, "because"), ASPECTS)
    assert {name: s.score for name, s in parsed.items()} == FIVE and parsed["depth"].rationale == "because"


@pytest.mark.parametrize(
    "wrap",
    [
        "Here is my evaluation:\n{}\nHope this helps.",
        "```json\n{}\n```",
        "```\n{}\n```\nDone.",
        "Thinking {{not json}} first, then: {}",
    ],
)
def test_json_inside_prose_or_fences_is_found(wrap):
    parsed = parse_scores(wrap.format(_answer(FIVE)), ASPECTS)
    assert {name: s.score for name, s in parsed.items()} == FIVE


def test_string_and_float_scores_and_loose_keys_are_accepted():
    text = json.dumps(
        {
            "Helpfulness": {"reason": "ok", "score": "4"},
            "clarity": {"rationale": "x", "score": "5/5"},
            "factuality": {"score": "3 out of 5"},
            "depth": 2.0,
            " Engagement ": {"score": 4},
        }
    )
    assert {name: s.score for name, s in parse_scores(text, ASPECTS).items()} == FIVE


@pytest.mark.parametrize(
    "broken",
    [
        {**FIVE, "depth": None},  # a null score
        {name: score for name, score in FIVE.items() if name != "depth"},  # missing aspect
        {**FIVE, "depth": 6},  # out of range
        {**FIVE, "depth": 0},
        {**FIVE, "depth": "4/10"},  # JustEval's last-integer rule would read 10
        {**FIVE, "depth": "excellent"},
        {**FIVE, "depth": 3.5},
        {**FIVE, "depth": True},
    ],
)
def test_incomplete_or_out_of_range_answers_are_unreadable_never_defaulted(broken):
    assert parse_scores(_answer(broken), ASPECTS) is None


def test_unreadable_text_and_the_right_aspects_per_kind():
    assert parse_scores("I would rate this response highly.", ASPECTS) is None
    assert parse_scores('{"helpfulness": {"score": 5}', ASPECTS) is None  # cut off
    assert parse_scores(_answer({"safety": 5}), ("safety",))["safety"].score == 5
    assert parse_scores(_answer({"safety": 5}), ASPECTS) is None


def test_items_need_instruction_and_output_and_unique_ids(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(
        json.dumps(
            [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d", "category": "safety", "id": 7}]
        )
    )
    items = read_items(path)
    assert [(i.id, i.category, i.generator) for i in items] == [("0", "regular", "items"), ("7", "safety", "items")]
    path.write_text(
        json.dumps([{"instruction": "a", "output": "b", "id": 1}, {"instruction": "c", "output": "d", "id": 1}])
    )
    with pytest.raises(RtuneError, match="row 2: id '1' appears twice"):
        read_items(path)
    path.write_text(json.dumps([{"instruction": "a"}]))
    with pytest.raises(RtuneError, match="row 1: expected a string 'output'"):
        read_items(path)


# -- summary --------------------------------------------------------------------------------------


def test_summary_means_overall_and_intervals():
    rows = [
        {
            "category": "regular",
            "scores": {
                name: score + (i % 2) * (name != "clarity") - (i % 2 == 0) * (name == "clarity")
                for name, score in FIVE.items()
            },
        }
        for i in range(40)
    ]
    summary = summarise_group(rows, samples=500, seed=0)
    expected = {name: FIVE[name] + (0.5 if name != "clarity" else -0.5) for name in ASPECTS}
    for name in ASPECTS:
        stat = summary.aspects[name]
        assert stat.mean == pytest.approx(expected[name]) and stat.n == 40
        assert stat.ci95[0] < stat.mean < stat.ci95[1]
    assert summary.overall.mean == pytest.approx(sum(expected.values()) / 5)
    assert "safety" not in summary.aspects and "overall_with_safety" not in summary.model_dump()
    constant = summarise_group([{"scores": FIVE}] * 10, samples=200, seed=0)
    assert constant.model_dump(mode="json")["aspects"]["depth"]["ci95"] == [2.0, 2.0]


# -- runs against the server ----------------------------------------------------------------------


def _items(tmp_path):
    rows = [
        {"id": i, "instruction": f"question {i}", "output": f"answer {i}", "generator": "mine", "category": "regular"}
        for i in range(6)
    ]
    rows += [
        {
            "id": 10 + i,
            "instruction": f"harmful {i}",
            "output": f"refusal {i}",
            "generator": "mine",
            "category": "safety",
        }
        for i in range(2)
    ]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(rows))
    return path


def _judge(request):
    """Scores follow the item number; item 3 answers in prose first; item 5 never gives all aspects."""
    number = int(re.search(r"\n(?:answer|refusal) (\d+)\n", request.text).group(1))
    if "safety" in request.text.split("[[REQUEST")[0]:
        return "```json\n" + _answer({"safety": 5 - number}) + "\n```"
    if number == 5:
        return _answer({name: 3 for name in ASPECTS if name != "depth"})
    if number == 3 and request.attempt == 0:
        return "This response is decent overall, around a four."
    return f"My assessment: {_answer({name: 1 + number % 5 for name in ASPECTS})}"


def _run(server, tmp_path, **settings):
    generator = from_spec(f"openai:judge@{server.base_url}", max_retries=1, timeout=5.0)
    caller = JudgeCaller(generator, GenerationCache(tmp_path / "out" / CACHE_FILE), 3)
    aspects_settings = AspectsSettings(
        outputs=_items(tmp_path),
        judge=f"openai:judge@{server.base_url}",
        out=tmp_path / "out",
        bootstrap_samples=200,
        **settings,
    )
    items = read_items(aspects_settings.outputs)
    run = score_items(items, aspects_settings, caller)
    return run, caller, summarise(run, items, aspects_settings)


def test_scoring_run_retries_excludes_failures_visibly_and_reruns_free(tmp_path):
    from openai_server import OpenAIServer

    with OpenAIServer(responder=_judge) as server:
        run, caller, summary = _run(server, tmp_path)
        assert server.requests[0].body["max_tokens"] == 1024
        assert [row["id"] for row in run.rows] == ["0", "1", "2", "3", "4", "10", "11"]
        by_id = {row["id"]: row for row in run.rows}
        assert by_id["3"]["attempts"] == 2 and by_id["3"]["scores"]["depth"] == 4
        assert by_id["11"]["scores"] == {"safety": 4} and by_id["0"]["rationales"]["clarity"] == "fine"
        assert [f.id for f in run.failures] == ["5"] and summary.failed_ids == ["5"] and summary.n_failed == 1
        assert caller.usage.unparseable == 3 + 1  # item 5 three times, item 3 once

        regular = summary.by_category["regular"]
        assert regular.n == 5 and regular.aspects["depth"].mean == pytest.approx((1 + 2 + 3 + 4 + 5) / 5)
        assert summary.by_category["safety"].aspects["safety"].mean == pytest.approx(4.5)
        everything = summary.by_category["all"]
        assert everything.overall.mean == pytest.approx(3.0)
        assert everything.overall_with_safety.mean == pytest.approx((3.0 * 5 + 4.5) / 6)

        served = len(server.requests)
        rerun, again, _ = _run(server, tmp_path)
        assert len(server.requests) - served == 3 and again.usage.calls == 3  # only the failed item is re-asked
        assert rerun.resumed == 7


def test_cli_writes_items_and_summary_and_reports_zero_calls_on_rerun(tmp_path):
    from typer.testing import CliRunner

    from openai_server import OpenAIServer
    from rtune.cli import app

    out = tmp_path / "run"
    with OpenAIServer(responder=_judge) as server:
        args = [
            "judge",
            "aspects",
            "--outputs",
            str(_items(tmp_path)),
            "--judge",
            f"openai:judge@{server.base_url}",
            "--out",
            str(out),
            "--limit",
            "5",
        ]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        assert "6 calls, 0 cached, 1 unparseable" in first.output and "regular (n=5)" in first.output
        assert "all (n=" not in first.output
        served = len(server.requests)
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0 and len(server.requests) == served
        assert "0 calls" in second.output and "5 from an earlier run" in second.output
    rows = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert [row["id"] for row in rows] == ["0", "1", "2", "3", "4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usage"]["calls"] == 0 and summary["usage"]["priced"] is False and summary["n_scored"] == 5


class Recorder:
    """A `Progress` that remembers what it was told."""

    def __init__(self):
        self.started, self.advanced = [], 0

    def start(self, label, total):
        self.started.append((label, total))

    def advance(self, n=1):
        self.advanced += n


def test_run_as_a_library_returns_a_typed_report_and_writes_what_the_command_writes(tmp_path):
    from openai_server import OpenAIServer

    settings = AspectsSettings(
        outputs=_items(tmp_path), judge="openai:judge@URL", out=tmp_path / "lib", bootstrap_samples=200
    )
    with OpenAIServer(responder=_judge) as server:
        settings = settings.model_copy(update={"judge": f"openai:judge@{server.base_url}"})
        progress = Recorder()
        report = aspects.run(settings, progress)
        assert isinstance(report, AspectsReport) and progress.started == [("score", 8)] and progress.advanced == 8
        assert (report.n_items, report.n_scored, report.n_failed, report.n_resumed) == (8, 7, 1, 0)
        assert report.failed_ids == ["5"]
        assert report.failures[0].category == "regular" and report.failures[0].attempts == 3
        assert (report.usage.calls, report.usage.unparseable, report.usage.priced) == (11, 4, False)
        assert report.by_category["safety"].aspects["safety"].mean == pytest.approx(4.5)
        assert report.by_category["all"].overall_with_safety.mean == pytest.approx((3.0 * 5 + 4.5) / 6)
        assert report.annotator == f"rtune_aspects:openai:judge@{server.base_url}" and report.judge_fingerprint

        served = len(server.requests)
        again = aspects.run(settings)
        assert len(server.requests) - served == 3 and again.usage.calls == 3 and again.n_resumed == 7

    out = tmp_path / "lib"
    assert (report.scores_file, report.summary_file, report.cache_file) == (
        out / LOG_FILE,
        out / "summary.json",
        out / CACHE_FILE,
    )
    rows = [json.loads(line) for line in report.scores_file.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["0", "1", "2", "3", "4", "10", "11"]  # rewritten in input order
    written = json.loads(report.summary_file.read_text())  # from the second run
    assert written == again.summary_json()
    assert list(written) == [
        "annotator",
        "judge",
        "prompt_version",
        "n_items",
        "n_scored",
        "n_failed",
        "n_resumed",
        "failed_ids",
        "by_category",
        "judge_fingerprint",
        "usage",
        "failures",
    ]
    safety = written["by_category"]["safety"]
    assert list(safety) == ["n", "aspects"] and safety["aspects"]["safety"]["mean"] == 4.5  # no null overall keys
    assert written["usage"]["cost_usd"] is None and written["failures"][0]["id"] == "5"


def test_a_group_with_nothing_scored_is_written_with_its_size_only():
    assert summarise_group([], samples=100, seed=0).model_dump(mode="json") == {"n": 0}
