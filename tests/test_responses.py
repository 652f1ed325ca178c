"""The response-rate classifier against hand labels of real small-model outputs, its rules, and
`rtune eval responses`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cli_runner import run_cli
from rtune.evals.responses import (
    ECHO_THRESHOLD,
    LABELS,
    LOOP_SHARE,
    char_loop,
    classify,
    copies_input,
    echo_score,
    loop_share,
)

LABELLED = Path(__file__).parent / "data" / "response_labels.jsonl"


def _labelled() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_hand_labels_cover_every_class_from_several_real_models():
    rows = _labelled()
    assert len(rows) >= 40
    assert {row["label"] for row in rows} >= set(LABELS) - {"empty"}
    assert len({row["model"] for row in rows}) >= 4


def test_agreement_with_the_hand_labels():
    rows = _labelled()
    predicted = [classify(row["instruction"], row["output"], row["finish_reason"]) for row in rows]
    agree = sum(p == row["label"] for p, row in zip(predicted, rows, strict=False))
    confusions = Counter((row["label"], p) for p, row in zip(predicted, rows, strict=False) if p != row["label"])
    print(
        f"agreement {agree}/{len(rows)} = {agree / len(rows):.3f}; disagreements (hand, classifier): {dict(confusions)}"
    )
    assert agree / len(rows) >= 0.9
    # the binary question the headline rests on: is it an answer or not?
    binary = sum((p == "answer") == (row["label"] == "answer") for p, row in zip(predicted, rows, strict=False))
    assert binary / len(rows) >= 0.95


def test_the_echo_threshold_separates_the_labelled_echoes():
    """Every labelled answer scores below ECHO_THRESHOLD, and nearly every restating echo at or above it.

    One echo of the RT rows (labelled after the threshold was set) restates the instruction with another
    task ("Write a Python function that takes two numbers and returns the difference ...") and scores 0.54;
    it still counts as a non-answer (a template leak).
    """
    rows = _labelled()
    answers = [echo_score(r["instruction"], r["output"]) for r in rows if r["label"] == "answer"]
    restated = [
        echo_score(r["instruction"], r["output"])
        for r in rows
        if r["label"] == "echo" and not copies_input(r["instruction"], r["output"])
    ]
    assert max(answers) < ECHO_THRESHOLD
    assert sum(score >= ECHO_THRESHOLD for score in restated) / len(restated) >= 0.9


def test_the_loop_share_threshold_separates_the_labelled_loops():
    """LOOP_SHARE sits between the answers and runaways (a list that repeats an item: 0.37) and the word loops."""
    rows = _labelled()
    looped = [loop_share(r["output"]) for r in rows if r["label"] == "degenerate" and not char_loop(r["output"])]
    others = [loop_share(r["output"]) for r in rows if r["label"] in ("answer", "runaway")]
    assert min(looped) >= LOOP_SHARE > max(others)


@pytest.mark.parametrize(
    "instruction, output, finish, label",
    [
        ("Name three fruits you can find in a market.", "", "stop", "empty"),
        (
            "Name three fruits you can find in a market.",
            "Name three fruits you can find in a market.\nApples.",
            "stop",
            "echo",
        ),
        (
            "Name three fruits you can find in a market.",
            "Three fruits you can find are apples, pears and plums.",
            "stop",
            "answer",
        ),
        ("Rewrite the sentence.\n\nIt changed my life.", "It changed my life.", "stop", "echo"),
        ("Which country is this city in?\n\nParis", "Paris is in France.", "stop", "answer"),
        ("Write a haiku about rain.", "Soft rain on the roof\n<|user|>\nThanks!", "stop", "template_leak"),
        ("Write a haiku about rain.", "rain falls down " * 20, "length", "degenerate"),
        ("What should I do about a nosebleed?", "The first thing to do is call 1" + "1" * 60, "length", "degenerate"),
        ("Write a function.", "def f(x):\n" + " " * 24 + "return x", "stop", "answer"),
        (
            "Write a haiku about rain.",
            "Rain taps on the window while the city sleeps and dreams of " + "many things " * 3,
            "length",
            "runaway",
        ),
    ],
)
def test_each_class_on_a_constructed_case(instruction, output, finish, label):
    assert classify(instruction, output, finish) == label


def test_loop_share_counts_repeated_ngrams():
    assert loop_share("one two three four " * 10) > 0.8
    assert loop_share(" ".join(f"word{i}" for i in range(40))) == 0.0


def test_cli_reports_rates_with_intervals(monkeypatch, capsys, tmp_path):
    rows = [
        {
            "instruction": r["instruction"],
            "output": r["output"],
            "finish_reason": r["finish_reason"],
            "generator": r["model"],
        }
        for r in _labelled()
    ]
    (tmp_path / "outputs.json").write_text(json.dumps(rows))
    code, _, err = run_cli(
        monkeypatch, capsys, "eval", "responses", str(tmp_path / "outputs.json"), "--out", str(tmp_path / "r.json")
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n"] == len(rows) and set(result["rates"]) == set(LABELS)
    assert sum(rate["value"] for rate in result["rates"].values()) == pytest.approx(1.0)
    answer = result["answer_rate"]
    assert answer["ci_low"] <= answer["value"] <= answer["ci_high"] and "answer rate" in err


def test_outputs_without_finish_reasons_are_refused_with_the_row(monkeypatch, capsys, tmp_path):
    (tmp_path / "old.json").write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    code, _, err = run_cli(monkeypatch, capsys, "eval", "responses", str(tmp_path / "old.json"))
    assert code == 2 and "old.json: row 1: expected a string 'finish_reason'" in err
