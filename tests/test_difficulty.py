"""Instruction difficulty: recovered from simulated judges, and on AlpacaEval's real annotations the
length-controlled win rate, with difficulty estimated without the scored model, lands near the
published leaderboard."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rtune.cli import app
from rtune.cli.metrics import app as metrics_app
from rtune.errors import RtuneError
from rtune.winrate.annotations import Annotation, read_annotations, write_annotations
from rtune.winrate.difficulty import DifficultyTable, estimate_difficulty, instruction_key, packaged_table, read_table
from rtune.winrate.metrics import summarize

# AlpacaEval looks difficulty up by row position, not by instruction, so in files with missing rows
# every row after a gap gets its neighbour's value (its published weights for these four models show
# a difficulty coefficient near 0.5 instead of 1). We score them both ways.
INCOMPLETE = {"gpt35_turbo_instruct", "minotaur-13b", "text_davinci_001", "phi-2"}


def _simulated_pool(n_models: int = 8, n_instructions: int = 150, seed: int = 0):
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1.5, n_instructions)
    instructions = [f"simulated instruction {i}" for i in range(n_instructions)]
    pool = {}
    for m in range(n_models):
        strength, slope = rng.normal(-1, 1), rng.uniform(-2.5, -1)
        length_1 = rng.integers(300, 2000, n_instructions)
        length_2 = (length_1 * rng.uniform(0.3, 2.0) + rng.normal(0, 300, n_instructions)).clip(1).astype(int)
        gap = (length_1 - length_2) / np.std(length_1 - length_2, ddof=1)
        p = 1 / (1 + np.exp(-(strength + slope * np.tanh(gap) + difficulty)))
        pool[f"model{m}"] = [
            Annotation(
                instruction=text,
                preference=1 + p_i,
                generator_1="ref",
                generator_2=f"model{m}",
                output_1_chars=l1,
                output_2_chars=l2,
            )
            for text, p_i, l1, l2 in zip(instructions, p, length_1.tolist(), length_2.tolist(), strict=False)
        ]
    return pool, difficulty, instructions


def test_joint_fit_recovers_simulated_difficulty():
    pool, truth, instructions = _simulated_pool()
    table = estimate_difficulty(pool, C=10.0)
    estimate = table.for_instructions(instructions)
    assert np.corrcoef(estimate, truth)[0, 1] > 0.97
    assert -2.5 < table.length_slope < -1
    assert table.for_instructions(instructions + ["not in the pool"]) is None


def test_cli_builds_a_table_that_winrate_uses(tmp_path):
    pool, _, _ = _simulated_pool(n_models=4, n_instructions=40)
    for name, rows in pool.items():
        write_annotations(tmp_path / "pool" / f"{name}.json", rows)
    table_path = tmp_path / "difficulty.json"
    result = CliRunner().invoke(
        metrics_app,
        ["difficulty", str(tmp_path / "pool"), "--exclude", "model3", "--joint-c", "1", "--out", str(table_path)],
    )
    assert result.exit_code == 0, result.output
    table = read_table(table_path)
    assert table.provenance["models"] == ["model0", "model1", "model2"] and len(table.difficulty) == 40
    assert table.provenance["command"].startswith("rtune metrics difficulty") and table.provenance["created"]

    result = CliRunner().invoke(
        app,
        [
            "metrics",
            "winrate",
            str(tmp_path / "pool" / "model3.json"),
            "--difficulty",
            str(table_path),
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[str(tmp_path / "pool" / "model3.json")]["lc_variant"] == "with_difficulty"


def test_read_table_rejects_other_json(tmp_path):
    path = tmp_path / "not_a_table.json"
    path.write_text("[1, 2]")
    with pytest.raises(RtuneError, match="not_a_table.json: not a difficulty table"):
        read_table(path)


def _positional(table: DifficultyTable, rows: list[Annotation], alpaca_eval_order: list[str]) -> DifficultyTable:
    """AlpacaEval's lookup: row i gets the difficulty of the i-th AlpacaEval instruction."""
    by_position = [table.difficulty[instruction_key(text)] for text in alpaca_eval_order]
    return DifficultyTable(
        {instruction_key(row.instruction): by_position[i] for i, row in enumerate(rows)}, table.length_slope, table.C
    )


@pytest.fixture(scope="module")
def leave_one_model_out(shared_data):
    """Per model: (published row, our report, our LC with AlpacaEval's positional lookup or None)."""
    folder = shared_data / "alpaca_eval" / "annotations"
    with open(folder / "leaderboard.csv", newline="") as handle:
        leaderboard = list(csv.DictReader(handle))
    order = [
        json.loads(line)["instruction"]
        for line in (shared_data / "alpaca_eval" / "alpaca_eval_805.jsonl").read_text().splitlines()
    ]
    pool = {row["dir"]: read_annotations(folder / f"{row['dir']}.json") for row in leaderboard}
    results = {}
    for row in leaderboard:
        name = row["dir"]
        table = estimate_difficulty(
            {other: rows for other, rows in pool.items() if other != name}, C=packaged_table().C
        )
        report = summarize(pool[name], name, table=table, n_resamples=10)
        positional = None
        if name in INCOMPLETE:
            positional = summarize(
                pool[name], name, table=_positional(table, pool[name], order), n_resamples=10
            ).length_controlled_winrate
        results[name] = (row, report, positional)
    return results


def test_lc_leave_one_model_out_matches_published_leaderboard(leave_one_model_out):
    raw, lc, lc_as_alpaca_eval = {}, {}, {}
    for name, (row, report, positional) in leave_one_model_out.items():
        assert report.lc_variant == "with_difficulty"
        raw[name] = report.win_rate - float(row["win_rate"])
        lc[name] = report.length_controlled_winrate - float(row["length_controlled_winrate"])
        lc_as_alpaca_eval[name] = (positional if positional is not None else report.length_controlled_winrate) - float(
            row["length_controlled_winrate"]
        )
    errors = {
        label: np.abs(list(values.values()))
        for label, values in [("raw", raw), ("lc", lc), ("lc_as_alpaca_eval", lc_as_alpaca_eval)]
    }
    for label, values in errors.items():
        print(f"{label}: mean abs error {values.mean():.3f}, max {values.max():.3f} over {len(values)} models")
    complete = np.abs([error for name, error in lc.items() if name not in INCOMPLETE])
    print(f"lc, 33 complete files: mean abs error {complete.mean():.3f}, max {complete.max():.3f}")

    assert len(raw) == 37 and errors["raw"].max() < 0.01
    assert errors["lc"].mean() < 0.75 and errors["lc"].max() < 3.6  # max: text_davinci_001 (misaligned upstream)
    assert complete.mean() < 0.55 and complete.max() < 2.6
    assert errors["lc_as_alpaca_eval"].mean() < 0.65 and errors["lc_as_alpaca_eval"].max() < 2.6
    assert all(abs(lc_as_alpaca_eval[name]) < 2.0 for name in INCOMPLETE)
