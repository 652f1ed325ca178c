"""Pairwise judge against a real OpenAI-compatible server on 127.0.0.1 (tests/openai_server.py)."""

from __future__ import annotations

import json
import math
import re

import pytest

from rtune.errors import RtuneError
from rtune.generation import GenerationCache, GenerationResult, TokenLogprob, from_spec
from rtune.judges import pairwise
from rtune.judges.caller import CACHE_FILE, JudgeCaller
from rtune.judges.pairs import align, model_shown_first, parsed_reading, preference, weighted_reading
from rtune.judges.pairwise import LOG_FILE, PairwiseReport, PairwiseSettings, judge_pairs

N = 8


def _write(path, rows):
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    instructions = [f"Instruction number {i}: explain item {i}." for i in range(N)]
    model = _write(
        tmp_path / "model.json",
        [
            {"instruction": text, "output": f"model answer {i}", "generator": "mine"}
            for i, text in enumerate(instructions)
        ],
    )
    reference = _write(
        tmp_path / "ref.json",
        [
            {"instruction": text, "output": f"reference answer {i}", "generator": "ref", "dataset": "toy"}
            for i, text in enumerate(reversed(instructions))
        ],
    )
    return model, reference


def _shown(request) -> tuple[str, str]:
    """The two responses as the judge saw them, first and second."""
    first = re.search(r"\[\[RESPONSE A \w+\]\]\n(.*?)\n\[\[END RESPONSE A", request.text, re.S).group(1)
    second = re.search(r"\[\[RESPONSE B \w+\]\]\n(.*?)\n\[\[END RESPONSE B", request.text, re.S).group(1)
    return first, second


def _one_token(p_a: float, p_b: float, extra: dict | None = None):
    from openai_server import Reply

    top = {"A": math.log(p_a), "B": math.log(p_b), **(extra or {})}
    chosen = "A" if p_a >= p_b else "B"
    return Reply(chosen, tokens=[(chosen, top[chosen], top)])


def _prefers_model(p_model: float):
    """A judge whose preference depends on content, not position: P(model wins) = p_model either way."""

    def respond(request):
        first, _ = _shown(request)
        p_first = p_model if first.startswith("model") else 1 - p_model
        return _one_token(p_first, 1 - p_first)

    return respond


def _run(server, tmp_path, files, mode="weighted", max_attempts=3, **options):
    generator = from_spec(
        f"openai:judge@{server.base_url}",
        max_retries=options.pop("max_retries", 2),
        timeout=5.0,
        concurrency=options.pop("concurrency", 8),
    )
    caller = JudgeCaller(generator, GenerationCache(tmp_path / "out" / CACHE_FILE), max_attempts)
    settings = PairwiseSettings(
        outputs=files[0],
        reference=files[1],
        judge=f"openai:judge@{server.base_url}",
        out=tmp_path / "out",
        annotator="rtune",
        mode=mode,
        **options,
    )
    judged = judge_pairs(align(*files).pairs, settings, caller)
    return judged, caller


# -- readings -------------------------------------------------------------------------------------


def _result(text: str, top: dict[str, float] | None) -> GenerationResult:
    logprobs = None if top is None else [TokenLogprob(token=text, logprob=top.get(text, -9.0), top=top)]
    return GenerationResult(text=text, finish_reason="length", prompt_tokens=10, completion_tokens=1, logprobs=logprobs)


def test_weighted_reading_renormalises_the_mass_on_both_identifiers():
    top = {"A": math.log(0.6), " A": math.log(0.05), "B": math.log(0.25), "The": math.log(0.1)}
    assert weighted_reading(_result("A", top)) == pytest.approx(0.65 / 0.90)
    assert weighted_reading(_result("B", {"B": 0.0})) == 0.0  # A absent from the top-k: no mass
    assert weighted_reading(_result("The", {"The": -0.1, "I": -3.0})) is None  # neither identifier: unreadable
    with pytest.raises(RtuneError, match="--mode parsed"):
        weighted_reading(_result("A", None))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A", 1.0),
        (" b ", 0.0),
        ("**B**", 0.0),
        ("Response A.", 1.0),
        ("(A)", 1.0),
        ("Both are close, but on balance:\nVerdict: B", 0.0),
        ("Both are good.", None),
        ("A good answer is hard to pick", None),
        ("", None),
        ("AB", None),
    ],
)
def test_parsed_reading_takes_only_a_clear_verdict(text, expected):
    assert parsed_reading(_result(text, None)) == expected


def test_preference_undoes_the_display_order():
    assert preference(0.9, swapped=False) == pytest.approx(1.1)  # reference shown first and preferred
    assert preference(0.9, swapped=True) == pytest.approx(1.9)  # model shown first and preferred
    orders = [model_shown_first(0, f"instruction {i}") for i in range(200)]
    assert 70 < sum(orders) < 130 and orders == [model_shown_first(0, f"instruction {i}") for i in range(200)]
    assert orders != [model_shown_first(1, f"instruction {i}") for i in range(200)]


def test_alignment_counts_unmatched_and_rejects_bad_rows(tmp_path, files):
    model, reference = files
    rows = json.loads(reference.read_text())[:5] + [{"instruction": "only in reference", "output": "x"}]
    alignment = align(model, _write(tmp_path / "partial.json", rows))
    assert (len(alignment.pairs), alignment.only_in_outputs, alignment.only_in_reference) == (5, 3, 1)
    assert [p.instruction for p in alignment.pairs] == [
        row["instruction"]
        for row in json.loads(model.read_text())
        if row["instruction"] in {r["instruction"] for r in rows}
    ]
    assert alignment.pairs[0].dataset == "toy" and alignment.pairs[0].reference_generator == "ref"
    with pytest.raises(RtuneError, match=r"row 2: expected a string 'output'"):
        align(
            _write(tmp_path / "bad.json", [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": ["d"]}]),
            reference,
        )
    with pytest.raises(RtuneError, match="share no instruction"):
        align(_write(tmp_path / "other.json", [{"instruction": "z", "output": "z"}]), reference)
    with pytest.raises(RtuneError, match="twice with different outputs"):
        align(
            _write(tmp_path / "dup.json", [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "c"}]),
            reference,
        )


# -- runs against the server ----------------------------------------------------------------------


def test_weighted_preferences_come_from_logprobs_with_the_order_undone(tmp_path, files):
    from openai_server import OpenAIServer

    with OpenAIServer(responder=_prefers_model(0.8)) as server:
        run, caller = _run(server, tmp_path, files)
        body = server.requests[0].body
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    assert len(run.annotations) == N and not run.failures
    assert {row["model_shown_first"] for row in run.annotations} == {True, False}  # both orders were used
    for row in run.annotations:
        assert row["preference"] == pytest.approx(1.8)  # same verdict whichever side the model was shown on
        assert row["output_1"].startswith("reference") and row["output_2"].startswith("model")
        assert (row["generator_1"], row["generator_2"], row["dataset"]) == ("ref", "mine", "toy")
    assert caller.usage.calls == N and caller.usage.completion_tokens == N


def test_position_biased_judge_gives_complementary_preferences(tmp_path, files):
    """A judge that always prefers what it sees first: undoing the order turns that into 1 or 2 by side."""
    from openai_server import OpenAIServer

    with OpenAIServer(responder=lambda request: _one_token(0.75, 0.25)) as server:
        run, _ = _run(server, tmp_path, files, seed=3)
    for row in run.annotations:
        assert row["preference"] == pytest.approx(1.75 if row["model_shown_first"] else 1.25)
        assert row["model_shown_first"] == model_shown_first(3, row["instruction"])


def test_parsed_mode_retries_unreadable_answers_and_never_caches_them(tmp_path, files):
    from openai_server import OpenAIServer

    def respond(request):
        first, _ = _shown(request)
        if "Instruction number 2:" in request.text or request.attempt == 0:
            return "Both responses have merits."  # item 2 never gives a verdict; the others only on retry
        return "A" if first.startswith("model") else "Response B"

    with OpenAIServer(responder=respond) as server:
        run, caller = _run(server, tmp_path, files, mode="parsed", max_attempts=3)
        assert [body["temperature"] for body in (r.body for r in server.requests[:N])] == [0] * N
        retries = [r.body for r in server.requests[N:]]
        assert retries and all(body["temperature"] > 0 for body in retries)
        assert len(server.requests) == N + (N - 1) + 2  # first tries, one retry each, two more for item 2
        assert sorted(row["preference"] for row in run.annotations) == [2.0] * (N - 1)
        assert all(row["attempts"] == 2 for row in run.annotations)
        assert [failure.attempts for failure in run.failures] == [3] and "number 2:" in run.failures[0].instruction
        assert caller.usage.unparseable == N + 2 and caller.usage.calls == 2 * N + 1
        cache = GenerationCache(tmp_path / "out" / CACHE_FILE)
        assert len(cache) == N - 1  # only readable answers were stored
        log = [json.loads(line) for line in (tmp_path / "out" / LOG_FILE).read_text().splitlines()]
        assert len(log) == N - 1  # the failed item is not logged as finished

        served = len(server.requests)
        rerun, again = _run(server, tmp_path, files, mode="parsed", max_attempts=3)
        assert len(server.requests) - served == 3  # only the failed item is asked again
        assert rerun.resumed == N - 1 and again.usage.calls == 3 and len(rerun.failures) == 1


def test_server_errors_are_retried_and_a_dead_server_caches_nothing(tmp_path, files):
    from openai_server import Fault, OpenAIServer

    def flaky(request):
        return Fault(status=500 if request.attempt == 0 else 429, retry_after_ms=10) if request.attempt < 2 else None

    with OpenAIServer(responder=_prefers_model(0.6), faults=flaky) as server:
        run, caller = _run(server, tmp_path, files)
        assert len(run.annotations) == N and caller.usage.calls == N
        assert sum(request.answered for request in server.requests) == N and len(server.requests) == 3 * N

    def dead(request):
        return Fault(status=503, retry_after_ms=10)

    with OpenAIServer(responder=_prefers_model(0.6), faults=dead) as server:
        with pytest.raises(RtuneError, match="HTTP 503"):
            _run(server, tmp_path / "dead", files, max_retries=1)
    assert len(GenerationCache(tmp_path / "dead" / "out" / CACHE_FILE)) == 0
    assert not (tmp_path / "dead" / "out" / LOG_FILE).exists()


def test_a_run_that_dies_keeps_its_finished_items_and_resumes(tmp_path, files):
    from openai_server import Fault, OpenAIServer

    broken = {"on": True}

    def dies_at_item_5(request):
        return Fault(status=500) if broken["on"] and "Instruction number 5:" in request.text else None

    with OpenAIServer(responder=_prefers_model(0.7), faults=dies_at_item_5) as server:
        with pytest.raises(RtuneError, match="HTTP 500") as failure:
            _run(server, tmp_path, files, concurrency=1, max_retries=0)
        assert f"finished items are saved in {tmp_path / 'out' / LOG_FILE}; rerun" in str(failure.value)
        saved = (tmp_path / "out" / LOG_FILE).read_text().splitlines()
        assert len(saved) == 5  # items 0-4 were appended as they finished
        broken["on"] = False
        served = len(server.requests)
        run, caller = _run(server, tmp_path, files)
        assert run.resumed == 5 and caller.usage.calls == N - 5 and len(server.requests) - served == N - 5
        assert len(run.annotations) == N


def test_a_rerun_is_free_from_the_log_and_from_the_cache(tmp_path, files):
    from openai_server import OpenAIServer

    with OpenAIServer(responder=_prefers_model(0.7)) as server:
        first, _ = _run(server, tmp_path, files)
        assert len(server.requests) == N
        rerun, caller = _run(server, tmp_path, files)  # finished items come from the log
        assert len(server.requests) == N and caller.usage.calls == 0 and rerun.resumed == N
        (tmp_path / "out" / LOG_FILE).unlink()
        rebuilt, caller = _run(server, tmp_path, files)  # the log is gone: every answer comes from the cache
        assert len(server.requests) == N and caller.usage.calls == 0 and caller.usage.cached == N
    assert [row["preference"] for row in rebuilt.annotations] == [row["preference"] for row in first.annotations]


class Recorder:
    """A `Progress` that remembers what it was told."""

    def __init__(self):
        self.started, self.advanced = [], 0

    def start(self, label, total):
        self.started.append((label, total))

    def advance(self, n=1):
        self.advanced += n


def test_run_as_a_library_returns_a_typed_report_and_writes_what_the_command_writes(tmp_path, files):
    import csv

    from openai_server import OpenAIServer, Reply
    from rtune.winrate.annotations import read_annotations

    def respond(request):  # item 6 never names A or B
        if "Instruction number 6:" in request.text:
            return Reply("Hmm", tokens=[("Hmm", -0.1, {"Hmm": -0.1, "I": -3.0})])
        return _prefers_model(0.75)(request)

    model, reference = files
    with OpenAIServer(responder=respond) as server:
        settings = PairwiseSettings(
            outputs=model,
            reference=reference,
            judge=f"openai:judge@{server.base_url}",
            annotator="rtune",
            out=tmp_path / "lib",
            limit=7,
            max_attempts=2,
            length_controlled=False,
        )
        progress = Recorder()
        report = pairwise.run(settings, progress)
        assert isinstance(report, PairwiseReport) and progress.started == [("judge", 7)] and progress.advanced == 7
        assert (report.n_compared, report.only_in_outputs, report.only_in_reference) == (7, 0, 0)
        assert (report.n_annotated, report.n_failed, report.n_resumed) == (6, 1, 0)
        assert "number 6:" in report.failures[0].instruction and report.failures[0].attempts == 2
        assert report.failures[0].last_answer == "Hmm"
        assert report.metrics.win_rate == pytest.approx(75.0) and (report.metrics.n, report.metrics.n_missing) == (6, 1)
        assert report.metrics.length_controlled_winrate is None and report.metrics.generator == "mine"
        assert (report.usage.calls, report.usage.unparseable, report.usage.priced) == (8, 2, False)
        assert report.usage.cost_usd is None and report.judge_fingerprint

        served = len(server.requests)
        again = pairwise.run(settings)
        assert len(server.requests) - served == 2 and again.usage.calls == 2  # only item 6, twice
        assert (again.n_resumed, again.n_annotated, again.n_failed) == (6, 6, 1)

    out = tmp_path / "lib"
    assert (report.annotations_file, report.leaderboard_file, report.run_file) == (
        out / "annotations.json",
        out / "leaderboard.csv",
        out / "run.json",
    )
    assert (report.log_file, report.cache_file) == (out / LOG_FILE, out / CACHE_FILE)
    annotations = read_annotations(report.annotations_file)
    assert len(annotations) == 7 and [a.preference for a in annotations].count(None) == 1
    assert len(report.log_file.read_text().splitlines()) == 6 and len(GenerationCache(report.cache_file)) == 6
    with report.leaderboard_file.open() as handle:
        assert float(next(csv.DictReader(handle))["win_rate"]) == pytest.approx(75.0)
    recorded = json.loads(report.run_file.read_text())  # from the second run
    assert list(recorded) == [
        "judge",
        "mode",
        "seed",
        "max_attempts",
        "top_logprobs",
        "parsed_max_new_tokens",
        "annotator",
        "prompt_version",
        "judge_fingerprint",
        "outputs",
        "reference",
        "n_compared",
        "only_in_outputs",
        "only_in_reference",
        "n_annotated",
        "n_failed",
        "n_resumed",
        "usage",
        "metrics",
        "failures",
    ]
    assert recorded["metrics"] == json.loads(again.metrics.model_dump_json()) and recorded["n_failed"] == 1
    assert recorded["usage"] == again.usage.model_dump() and recorded["outputs"] == str(model)
    assert recorded["failures"] == [failure.model_dump() for failure in again.failures]


def test_pairwise_settings_reject_what_the_command_would():
    with pytest.raises(ValueError, match="mode"):
        PairwiseSettings(outputs="a.json", reference="b.json", judge="hf:x", out="o", mode="vote")
    with pytest.raises(ValueError, match="top_logprobs"):
        PairwiseSettings(outputs="a.json", reference="b.json", judge="hf:x", out="o", top_logprobs=21)
    with pytest.raises(ValueError, match="unknown"):
        PairwiseSettings(outputs="a.json", reference="b.json", judge="hf:x", out="o", unknown=1)


def test_the_annotator_defaults_to_alpaca_eval_2_only_when_it_is_installed(monkeypatch):
    from rtune.judges import alpaca_eval_annotator

    def settings(**options):
        return PairwiseSettings(outputs="a.json", reference="b.json", judge="openai:j", out="o", **options)

    monkeypatch.setattr(alpaca_eval_annotator, "installed_version", lambda: "0.6.6")
    assert settings().annotator == "alpaca_eval_2" and settings().label == "weighted_alpaca_eval_gpt4_turbo:openai:j"
    assert settings(mode="parsed").annotator == "rtune"  # AlpacaEval's annotator reads log-probabilities only
    with pytest.raises(RtuneError, match="mode parsed needs annotator rtune"):
        settings(annotator="alpaca_eval_2", mode="parsed")
    monkeypatch.setattr(alpaca_eval_annotator, "installed_version", lambda: None)
    assert settings().annotator == "rtune" and settings().label == "rtune_pairwise_weighted:openai:j"
    with pytest.raises(RtuneError, match=r'pip install "rtune\[alpaca-eval\]"'):
        settings(annotator="alpaca_eval_2").protocol()


# -- the command ----------------------------------------------------------------------------------


def test_cli_writes_alpaca_eval_files_and_a_rerun_makes_zero_calls(tmp_path, files):
    import csv

    from typer.testing import CliRunner

    from openai_server import OpenAIServer
    from rtune.cli import app
    from rtune.winrate.annotations import read_annotations

    out = tmp_path / "judged"
    model, reference = files
    with OpenAIServer(responder=_prefers_model(0.9)) as server:
        args = [
            "judge",
            "pairwise",
            "--outputs",
            str(model),
            "--reference",
            str(reference),
            "--judge",
            f"openai:judge@{server.base_url}",
            "--out",
            str(out),
            "--seed",
            "1",
            "--annotator",
            "rtune",
        ]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        assert f"{N} instructions to compare; 0 only in model.json, 0 only in ref.json" in first.output
        assert f"{N} calls, 0 cached" in first.output and "win rate 90.00 ± 0.00" in first.output
        served = len(server.requests)
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0 and len(server.requests) == served
        assert "0 calls" in second.output and f"{N} from an earlier run" in second.output

    annotations = read_annotations(out / "annotations.json")
    assert len(annotations) == N and all(a.preference == pytest.approx(1.9) for a in annotations)
    assert annotations[0].generator_2 == "mine"
    assert annotations[0].annotator == f"rtune_pairwise_weighted:openai:judge@{server.base_url}"
    raw = json.loads((out / "annotations.json").read_text())
    assert "key" not in raw[0] and raw[0]["raw_completion"]["top_logprobs"]
    with (out / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "",
        "win_rate",
        "standard_error",
        "n_wins",
        "n_wins_base",
        "n_draws",
        "n_total",
        "discrete_win_rate",
        "avg_length",
        "length_controlled_winrate",
        "lc_standard_error",
    ]
    assert rows[0][""] == "mine" and float(rows[0]["win_rate"]) == pytest.approx(90.0) and rows[0]["n_total"] == str(N)
    run = json.loads((out / "run.json").read_text())
    assert run["usage"]["calls"] == 0 and run["n_annotated"] == N and run["only_in_reference"] == 0


def test_cli_rejects_a_bad_mode_in_one_line(tmp_path, files, monkeypatch, capsys):
    import sys

    from rtune.cli import main

    model, reference = files
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "rtune",
            "judge",
            "pairwise",
            "--outputs",
            str(model),
            "--reference",
            str(reference),
            "--judge",
            "openai:x@http://127.0.0.1:9/v1",
            "--out",
            str(tmp_path / "o"),
            "--mode",
            "vote",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "--mode: Input should be 'weighted' or 'parsed'" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_with_an_in_process_judge(tmp_path):
    """`rtune judge pairwise` with hf:smollm2-135m-instruct reading its own top log-probabilities."""
    from typer.testing import CliRunner

    from rtune.cli import app
    from rtune.winrate.annotations import read_annotations

    questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What is 2 + 2?",
        "Say hello in Spanish.",
        "Which planet is closest to the Sun?",
        "What do bees make?",
        "How many days are in a week?",
        "What is the opposite of hot?",
    ]
    good = ["Paris.", "Red.", "4.", "Hola.", "Mercury.", "Honey.", "Seven.", "Cold."]
    model = _write(
        tmp_path / "model.json",
        [{"instruction": q, "output": a, "generator": "good"} for q, a in zip(questions, good, strict=False)],
    )
    reference = _write(
        tmp_path / "ref.json",
        [{"instruction": q, "output": "I do not know.", "generator": "unhelpful"} for q in questions],
    )
    args = [
        "judge",
        "pairwise",
        "--outputs",
        str(model),
        "--reference",
        str(reference),
        "--judge",
        "hf:smollm2-135m-instruct",
        "--out",
        str(tmp_path / "out"),
        "--annotator",
        "rtune",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    annotations = read_annotations(tmp_path / "out" / "annotations.json")
    assert len(annotations) == 8 and json.loads((tmp_path / "out" / "run.json").read_text())["n_failed"] == 0
    assert all(1 <= a.preference <= 2 for a in annotations)
    assert (tmp_path / "out" / "leaderboard.csv").read_text().startswith(",win_rate,standard_error")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "judge: 0 calls" in again.output


def test_cli_keeps_unanswered_items_as_null_preferences(tmp_path, files):
    from typer.testing import CliRunner

    from openai_server import OpenAIServer
    from rtune.cli import app
    from rtune.winrate.annotations import read_annotations

    def respond(request):
        first, _ = _shown(request)
        if "Instruction number 4:" in request.text:
            return "I cannot decide."
        return "A" if first.startswith("model") else "B"

    model, reference = files
    out = tmp_path / "parsed"
    with OpenAIServer(responder=respond) as server:
        result = CliRunner().invoke(
            app,
            [
                "judge",
                "pairwise",
                "--outputs",
                str(model),
                "--reference",
                str(reference),
                "--judge",
                f"openai:judge@{server.base_url}",
                "--out",
                str(out),
                "--mode",
                "parsed",
                "--max-attempts",
                "2",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "1 comparisons gave no readable answer after 2 tries" in result.output and "n=7" in result.output
    annotations = read_annotations(out / "annotations.json")
    assert [a.preference for a in annotations].count(None) == 1 and len(annotations) == N
    assert json.loads((out / "run.json").read_text())["n_failed"] == 1


def test_prices_apply_only_to_the_openai_api_itself():
    from rtune.judges.pricing import Usage, price_per_million

    assert price_per_million("openai:gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_per_million("openai:gpt-4o-2024-08-06@http://127.0.0.1:8000/v1") is None
    assert price_per_million("hf:smollm2-135m-instruct") is None and price_per_million("openai:unknown-model") is None
    usage = Usage()
    usage.record(GenerationResult(text="A", finish_reason="length", prompt_tokens=1_000_000, completion_tokens=100_000))
    usage.record(
        GenerationResult(text="A", finish_reason="length", prompt_tokens=999, completion_tokens=1, cached=True)
    )
    assert (usage.calls, usage.cached, usage.prompt_tokens) == (1, 1, 1_000_000)
    assert usage.cost_usd("openai:gpt-4o-2024-08-06") == pytest.approx(3.50)
    assert usage.report("hf:x").cost_usd is None


def test_alpaca_eval_outputs_get_the_length_controlled_win_rate_with_difficulty(tmp_path, shared_data):
    """Real AlpacaEval files through the command: the LC fit sees our annotations and the packaged difficulty."""
    from typer.testing import CliRunner

    from openai_server import OpenAIServer
    from rtune.cli import app

    def longer_wins(request):  # a judge that only likes length: LC takes that away
        first, second = _shown(request)
        return _one_token(0.8, 0.2) if len(first) > len(second) else _one_token(0.2, 0.8)

    folder = shared_data / "alpaca_eval"
    out = tmp_path / "ae"
    with OpenAIServer(responder=longer_wins) as server:
        result = CliRunner().invoke(
            app,
            [
                "judge",
                "pairwise",
                "--outputs",
                str(folder / "gpt-4-turbo-2024-04-09_model_outputs.json"),
                "--reference",
                str(folder / "gpt4_1106_preview_model_outputs.json"),
                "--judge",
                f"openai:judge@{server.base_url}",
                "--out",
                str(out),
                "--limit",
                "60",
                "--annotator",
                "rtune",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "60 instructions to compare; 0 only in" in result.output
    metrics = json.loads((out / "run.json").read_text())["metrics"]
    assert metrics["n"] == 60 and metrics["lc_variant"] == "with_difficulty" and metrics["lc_note"] is None
    assert metrics["avg_length"] < 2000 and metrics["win_rate"] < 35  # the model is mostly the shorter one here
    assert metrics["length_controlled_winrate"] > metrics["win_rate"] + 10
