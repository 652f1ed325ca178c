"""Win rates over AlpacaEval annotations: hand-checked cases, real leaderboard values, bad input, CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from rtune.cli import app
from rtune.errors import RtuneError
from rtune.winrate.annotations import Annotation, read_annotations, write_annotations
from rtune.winrate.difficulty import packaged_table
from rtune.winrate.metrics import bootstrap_ci, preference_scores, summarize, win_rate_report


def _annotations(preferences, n_chars=None, instructions=None) -> list[Annotation]:
    rows = []
    for i, preference in enumerate(preferences):
        length_1, length_2 = n_chars[i] if n_chars is not None else (100, 100)
        rows.append(
            Annotation(
                instruction=instructions[i] if instructions else f"custom instruction {i}",
                preference=preference,
                generator_1="ref",
                generator_2="model",
                output_1_chars=length_1,
                output_2_chars=length_2,
            )
        )
    return rows


def _length_biased_judge(n: int = 400, seed: int = 0) -> tuple[list[float], list[tuple[int, int]]]:
    """Two equally good systems; the model writes longer answers and the judge likes length."""
    rng = np.random.default_rng(seed)
    length_1 = rng.integers(200, 1500, n)
    length_2 = length_1 + rng.normal(400, 500, n).astype(int).clip(-150, None)
    gap = (length_1 - length_2) / np.std(length_1 - length_2, ddof=1)
    preferences = 1 + 1 / (1 + np.exp(2.0 * np.tanh(gap)))  # P(model wins) = logistic(-2 tanh(gap))
    return list(preferences), list(zip(length_1.tolist(), length_2.tolist(), strict=False))


def test_win_rate_by_hand_with_ties_and_missing():
    # scores: 0 (ref), 1 (model), 0.5 (tie), 0.5 (legacy draw 0), 0.75 (weighted), missing
    report = win_rate_report(_annotations([1, 2, 1.5, 0, 1.75, None]))
    scores = np.array([0, 1, 0.5, 0.5, 0.75])
    assert report.win_rate == pytest.approx(55.0)
    assert report.standard_error == pytest.approx(scores.std(ddof=1) / math.sqrt(5) * 100)
    assert report.discrete_win_rate == pytest.approx(60.0)  # 0.75 rounds to a win
    assert (report.n, report.n_missing, report.n_total) == (5, 1, 5)
    assert (report.n_wins, report.n_wins_base, report.n_draws) == (2, 1, 2)
    assert (report.generator, report.baseline) == ("model", "ref")
    assert report.ci_low < report.win_rate < report.ci_high


def test_bootstrap_interval_is_seeded():
    scores = preference_scores(_annotations([1, 2, 2, 1.5, 1.2, 1.9, 1, 2, 1.3, 1.6]))
    assert bootstrap_ci(scores, 500, seed=3) == bootstrap_ci(scores, 500, seed=3)
    assert bootstrap_ci(scores, 500, seed=3) != bootstrap_ci(scores, 500, seed=4)
    low, high = bootstrap_ci(scores, 2000, seed=0)
    assert low < scores.mean() * 100 < high and high - low < 60


def test_raw_win_rate_matches_published_leaderboard(shared_data):
    folder = shared_data / "alpaca_eval" / "annotations"
    with open(folder / "leaderboard.csv", newline="") as handle:
        leaderboard = list(csv.DictReader(handle))
    assert len(leaderboard) == 37
    worst = 0.0
    for row in leaderboard:
        annotations = read_annotations(folder / f"{row['dir']}.json")
        report = summarize(annotations, row["dir"], length_controlled=False)
        worst = max(worst, abs(report.win_rate - float(row["win_rate"])))
        if len(annotations) == 805:  # AlpacaEval's avg_length is over all 805 outputs, truncated
            assert int(report.avg_length) == int(row["avg_length"]), row["dir"]
    assert worst < 0.01


def test_length_controlled_uses_packaged_difficulty_on_alpaca_eval(shared_data):
    instructions = [
        json.loads(line)["instruction"]
        for line in (shared_data / "alpaca_eval" / "alpaca_eval_805.jsonl").read_text().splitlines()
    ]
    assert packaged_table().for_instructions(instructions) is not None
    annotations = read_annotations(shared_data / "alpaca_eval" / "annotations" / "claude-2.json")
    report = summarize(annotations, "claude-2.json", n_resamples=100)
    assert report.lc_variant == "with_difficulty" and report.lc_note is None
    # Published: LC 28.16 with raw 17.19 (Claude 2 writes shorter answers than the GPT-4 baseline).
    assert report.length_controlled_winrate == pytest.approx(28.16, abs=3)
    assert 0 < report.lc_standard_error < 3


def test_length_controlled_removes_pure_length_preference_on_custom_set():
    preferences, n_chars = _length_biased_judge()
    report = summarize(_annotations(preferences, n_chars), "custom.json", n_resamples=100)
    assert report.lc_variant == "minimal"
    assert "without instruction difficulty" in report.lc_note
    assert report.win_rate > 60  # the longer model wins on length alone...
    assert report.length_controlled_winrate == pytest.approx(50, abs=1)  # ...and LC sees two equals


def test_lengths_come_from_texts_when_present():
    preferences, n_chars = _length_biased_judge(n=60, seed=1)
    from_chars = _annotations(preferences, n_chars)
    from_texts = [
        Annotation(
            instruction=a.instruction,
            preference=a.preference,
            output_1="x" * a.output_1_chars,
            output_2="y" * a.output_2_chars,
            output_1_chars=1,
            output_2_chars=1,
        )  # chars ignored
        for a in from_chars
    ]
    lc = [summarize(rows, "f", n_resamples=10).length_controlled_winrate for rows in (from_chars, from_texts)]
    assert lc[0] == pytest.approx(lc[1])


def test_lc_of_a_model_that_always_loses_is_zero():
    # a parsed (discrete) judge and a model that never wins: nothing to correct for length
    _, n_chars = _length_biased_judge(n=30)
    report = summarize(_annotations([1] * 30, n_chars), "loser.json", n_resamples=10)
    assert report.win_rate == 0 and report.length_controlled_winrate == 0


def test_too_few_rows_leaves_lc_empty_with_a_note():
    report = summarize(_annotations([2, 1, 1.5]), "tiny.json", n_resamples=10)
    assert report.length_controlled_winrate is None and "at least" in report.lc_note


def test_annotations_round_trip_keeps_unknown_fields_and_nulls(tmp_path):
    rows = [
        {
            "instruction": "a",
            "output_1": "r",
            "output_2": "m",
            "generator_1": "ref",
            "generator_2": "m",
            "annotator": "judge",
            "preference": None,
            "raw_completion": {"logprobs": [1, 2]},
        },
        {"instruction": "b", "output_1_chars": 3, "output_2_chars": 9, "preference": 1.25},
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    write_annotations(tmp_path / "copy.json", read_annotations(path))
    assert json.loads((tmp_path / "copy.json").read_text()) == rows


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"instruction": "a", "preference": 1}', "malformed JSON"),
        ('{"instruction": "a"}', "expected a JSON array"),
        ('[{"instruction": "a", "preference": 1}, {"instruction": "b"}]', "record 2: preference: Field required"),
        ('[{"instruction": "a", "preference": 3}]', "record 1: preference: .*must be in \\[1, 2\\]"),
        ('[{"instruction": "a", "preference": "2"}]', "record 1: preference: "),
        ('["a"]', "record 1: expected a JSON object"),
    ],
)
def test_bad_annotation_files_name_file_and_record(tmp_path, content, message):
    path = tmp_path / "annotations.json"
    path.write_text(content)
    with pytest.raises(RtuneError, match=message) as caught:
        read_annotations(path)
    assert str(path) in str(caught.value)


def test_lc_without_lengths_names_the_record():
    rows = _annotations([1, 2] * 6)
    rows[3] = Annotation(instruction="no lengths", preference=2)
    with pytest.raises(RtuneError, match="f.json: record 4: .*--no-lc"):
        summarize(rows, "f.json", n_resamples=10)
    assert summarize(rows, "f.json", length_controlled=False).n == 12


def test_cli_prints_per_file_json(tmp_path):
    preferences, n_chars = _length_biased_judge(n=50)
    path = tmp_path / "annotations.json"
    write_annotations(path, _annotations(preferences, n_chars))
    result = CliRunner().invoke(
        app, ["metrics", "winrate", str(path), "--bootstrap", "100", "--out", str(tmp_path / "metrics.json")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)[str(path)]
    assert {"win_rate", "standard_error", "length_controlled_winrate", "n", "ci_low", "ci_high", "lc_variant"} <= set(
        report
    )
    assert report["n"] == 50 and report["lc_variant"] == "minimal"
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(result.output)


def test_cli_bad_file_is_an_rtune_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"instruction": "a"}]')
    result = CliRunner().invoke(app, ["metrics", "winrate", str(path)])
    assert isinstance(result.exception, RtuneError) and "broken.json: record 1" in str(result.exception)
