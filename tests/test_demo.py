"""`rtune demo`: the experiment it writes, and the quick demo end to end on gemma-3-270m (slow)."""

from __future__ import annotations

import json
import sys
import time

import pytest

from rtune.pipeline.demo import demo_experiment
from rtune.pipeline.experiment import cells


def test_demo_without_data_uses_only_packaged_data():
    experiment = demo_experiment(quick=True)
    assert [cell.name for cell in cells(experiment)] == [
        "gemma/base",
        "gemma/demo/it/s0",
        "gemma/demo/rt/s0",
    ]
    assert experiment.datasets["demo"].source == "demo" and experiment.data_dir is None
    assert set(experiment.evals) == {"responses", "likelihood"}
    assert experiment.evals["responses"].instructions == "heldout" and experiment.generation.prompt == "tulu"


def test_demo_with_a_data_dir_adds_safety_and_core(tmp_path):
    experiment = demo_experiment(quick=False, data_dir=tmp_path)
    assert experiment.datasets["demo"].source == "demo"
    assert experiment.evals["safety"].sets == ["xstest"] and experiment.evals["safety"].judge == "keyword"
    assert experiment.evals["core"].tasks == ["arc_easy"]


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, monkeypatch, capsys):
    from rtune.cli import main

    out = tmp_path / "demo"
    monkeypatch.delenv("RTUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["rtune", "demo", "--quick", "--out", str(out)])
    started = time.time()
    main()
    elapsed = time.time() - started
    assert (out / "report.html").exists() and (out / "report.md").exists()
    report = (out / "report.md").read_text()
    for cell in ("gemma/base", "gemma/demo/it/s0", "gemma/demo/rt/s0"):
        assert f"| {cell} |" in report
        result = json.loads((out / "stages" / cell / "likelihood" / "result.json").read_text())
        assert result["n_items"] == 6 and 0 <= result["accuracy"] <= 1
        labels = json.loads((out / "stages" / cell / "responses" / "result.json").read_text())
        assert labels["n"] == 2 and 0 <= labels["answer_rate"]["value"] <= 1
    outputs = json.loads((out / "stages" / "gemma/demo/rt/s0/generate-heldout/outputs.json").read_text())
    assert len(outputs) == 2 and all(
        isinstance(row["output"], str) and row["finish_reason"] in ("stop", "length") for row in outputs
    )
    printed = capsys.readouterr().err
    assert "Response rate" in printed and "Judge-free likelihood metric" in printed
    print(f"quick demo took {elapsed:.0f}s")

    monkeypatch.setattr(sys, "argv", ["rtune", "demo", "--quick", "--out", str(out)])
    main()  # a second run finds everything cached
    assert "0 to run" in capsys.readouterr().err
