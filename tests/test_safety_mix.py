"""Refusal mixture: the paper's keyword filter, seeded sampling, and the CLI, on the real safety file."""

from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from rtune.cli import app
from rtune.data.records import Record, read_records, write_records
from rtune.data.safety_mix import build_safety_mix, is_explanatory_refusal, mix_records, sample_refusals
from rtune.data.sources import build_records
from rtune.errors import RtuneError


def test_keyword_rule_matches_whole_words_ai_or_sorry_only():
    assert is_explanatory_refusal("I'm sorry, but I cannot do that.")
    assert is_explanatory_refusal("As an AI language model, I won't.")
    assert is_explanatory_refusal("SORRY!")
    assert not is_explanatory_refusal("There is no credible evidence for that claim.")
    assert not is_explanatory_refusal("Said the sorrymaker")  # not a whole word
    assert not is_explanatory_refusal("Fair point, but the email domain is wrong.")  # 'ai' inside words


def _records(n: int, source: str) -> list[Record]:
    return [
        Record(id=f"{source}-{i}", prompt=f"q{i}", completion=("Sorry, no." if i % 2 else "No."), source=source)
        for i in range(n)
    ]


def test_sampling_is_seeded_shuffle_and_take():
    pool = _records(50, "s")
    expected = list(pool)
    random.Random(3).shuffle(expected)
    assert sample_refusals(pool, 7, seed=3) == expected[:7]
    assert sample_refusals(pool, 7, seed=3) != sample_refusals(pool, 7, seed=4)
    with pytest.raises(RtuneError, match="only 50 pass"):
        sample_refusals(pool, 51, seed=0)


def test_mix_appends_filtered_refusals_after_the_target():
    target, safety = _records(5, "lima"), _records(10, "safety-tuned-llamas")
    mix = mix_records(target, safety, 3, "keyword", 0, "safety-tuned-llamas")
    assert mix.records[:5] == target
    assert [r.source for r in mix.records[5:]] == ["safety-tuned-llamas"] * 3
    assert all(r.completion == "Sorry, no." for r in mix.records[5:])
    assert (mix.safety_total, mix.safety_eligible, mix.safety_added) == (10, 5, 3)
    assert mix_records(target, safety, 10, "none", 0, "s").safety_eligible == 10


def test_id_clash_between_target_and_refusals_is_an_error():
    with pytest.raises(RtuneError, match="already used by a target record"):
        mix_records(_records(3, "x"), _records(3, "x"), 3, "none", 0, "x")


def test_real_file_counts(shared_data):
    built = build_records("safety-tuned-llamas", shared_data)
    assert built.total_rows == 2483
    assert sum(is_explanatory_refusal(r.completion) for r in built.records) == 1829


def test_real_mixture_and_cli(shared_data, tmp_path):
    target = build_records("lima", shared_data, max_examples=100, seed=0).records
    target_path = tmp_path / "lima100.jsonl"
    write_records(target_path, target)
    mix = build_safety_mix(target_path, 200, data_dir=shared_data, seed=0)
    assert (mix.target_count, mix.safety_total, mix.safety_eligible, mix.safety_added) == (100, 2483, 1829, 200)
    added = mix.records[100:]
    assert all(r.source == "safety-tuned-llamas" and is_explanatory_refusal(r.completion) for r in added)
    assert len({r.id for r in mix.records}) == 300
    assert [r.id for r in build_safety_mix(target_path, 200, data_dir=shared_data, seed=0).records] == [
        r.id for r in mix.records
    ]
    assert [r.id for r in build_safety_mix(target_path, 200, data_dir=shared_data, seed=1).records] != [
        r.id for r in mix.records
    ]

    out = tmp_path / "mixed.jsonl"
    result = CliRunner().invoke(
        app, ["data", "mix-safety", str(target_path), "--n", "200", "--data-dir", str(shared_data), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "2483 refusal examples, 1829 pass --filter keyword, 200 sampled" in result.output
    written = read_records(out).records
    assert [r.id for r in written] == [r.id for r in mix.records]
    assert sum(r.source == "safety-tuned-llamas" for r in written) == 200

    unfiltered = CliRunner().invoke(
        app,
        [
            "data",
            "mix-safety",
            str(target_path),
            "--n",
            "2483",
            "--filter",
            "none",
            "--data-dir",
            str(shared_data),
            "--out",
            str(tmp_path / "all.jsonl"),
        ],
    )
    assert unfiltered.exit_code == 0, unfiltered.output
    assert len(read_records(tmp_path / "all.jsonl").records) == 100 + 2483
