"""`rtune run`: a tiny experiment end to end, a failure midway and a resume, the dry run, cell selection,
shipped YAMLs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from rtune.config import SHIPPED_CONFIGS
from rtune.errors import RtuneError
from rtune.pipeline.builder import build_plan
from rtune.pipeline.experiment import cells, load_experiment
from rtune.pipeline.plan import select
from rtune.pipeline.runner import run_experiment

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "src" / "rtune" / "resources" / "demo" / "heldout.jsonl"


def write_experiment(folder: Path, model_dir: Path, **likelihood) -> Path:
    """Two methods (base, rt) on the tiny model, one cheap evaluation each."""
    (folder / "heldout4.jsonl").write_text("".join(HELDOUT.read_text().splitlines(keepends=True)[:4]))
    experiment = {
        "name": "tiny",
        "models": {"tiny": str(model_dir)},
        "datasets": {"demo": {"source": "demo", "max_examples": 8}},
        "methods": ["base", "rt"],
        "training": {
            "overrides": {
                "max_steps": 2,
                "batch_size": 4,
                "max_length": 64,
                "lora_r": 4,
                "lora_alpha": 8,
                "learning_rate": 1e-2,
                "save_steps": 1,
                "check_memory": False,
            }
        },
        "evals": {"likelihood": {"records": "heldout4.jsonl", "max_response_tokens": 12, **likelihood}},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


def _report_tables(run_dir: Path) -> str:
    """The report's results (its last section, the wall time per stage, differs from run to run)."""
    report = (run_dir / "report.md").read_text()
    assert "## Wall time per stage" in report
    return report.split("## Wall time per stage")[0]


def test_killed_run_resumes_to_the_same_numbers(tiny_model_dir, tmp_path, monkeypatch):
    from rtune.pipeline.kinds import likelihood

    experiment = load_experiment(write_experiment(tmp_path, tiny_model_dir))
    straight = tmp_path / "straight"
    outcome = run_experiment(experiment, straight)
    assert set(outcome.values()) == {"done"}
    assert sorted(outcome) == [
        "data/demo",
        "tiny/base/likelihood",
        "tiny/demo/rt/s0/likelihood",
        "tiny/demo/rt/s0/train",
    ]

    calls = []
    real = likelihood.run

    def dies_on_the_trained_model(ctx):
        calls.append(ctx.stage.key)
        if ctx.stage.cell.method == "rt":
            (ctx.work / "half-done").write_text("")
            raise KeyboardInterrupt  # what Ctrl-C (or a killed job) leaves behind
        return real(ctx)

    monkeypatch.setattr(likelihood, "run", dies_on_the_trained_model)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(experiment, resumed)
    stages = resumed / "stages"
    assert (stages / "tiny/demo/rt/s0/train/stage.json").exists() and (
        stages / "tiny/base/likelihood/stage.json"
    ).exists()
    assert not (stages / "tiny/demo/rt/s0/likelihood").exists()
    assert list(
        (stages / "tiny/demo/rt/s0").glob("likelihood.partial-*/half-done")
    )  # its work folder waits for the resume

    monkeypatch.setattr(likelihood, "run", real)
    outcome = run_experiment(experiment, resumed)
    assert outcome == {
        "data/demo": "cached",
        "tiny/demo/rt/s0/train": "cached",
        "tiny/base/likelihood": "cached",
        "tiny/demo/rt/s0/likelihood": "done",
    }
    assert not list((stages / "tiny/demo/rt/s0").glob("likelihood.partial-*"))
    assert _report_tables(resumed) == _report_tables(straight)
    for key in ("tiny/base/likelihood", "tiny/demo/rt/s0/likelihood"):
        ours, theirs = (json.loads((run / "stages" / key / "result.json").read_text()) for run in (resumed, straight))
        assert ours["variants"] == theirs["variants"]
    html = (resumed / "report.html").read_text()
    assert "tiny/demo/rt/s0" in html and "Training loss" in html


def test_jobs_run_stages_side_by_side_to_the_same_numbers(tiny_model_dir, tmp_path, monkeypatch):
    """--jobs 2: base's likelihood runs while RT trains (it waits for the train stage to finish, which
    one job at a time would never allow), the results equal a one-job run, each stage keeps its log."""
    import time

    from rtune.pipeline.kinds import likelihood

    experiment = load_experiment(write_experiment(tmp_path, tiny_model_dir))
    one, two = tmp_path / "one", tmp_path / "two"
    run_experiment(experiment, one)
    real = likelihood.run

    def base_waits_for_rt_training(ctx):
        if ctx.stage.cell.method == "base":
            deadline = time.time() + 120
            while not (two / "stages/tiny/demo/rt/s0/train/stage.json").exists():
                assert time.time() < deadline, "the train stage did not run beside this one"
                time.sleep(0.05)
        return real(ctx)

    monkeypatch.setattr(likelihood, "run", base_waits_for_rt_training)
    outcome = run_experiment(experiment, two, jobs=2)
    assert outcome == {key: "done" for key in outcome} and len(outcome) == 4
    assert _report_tables(two) == _report_tables(one)
    for key in ("tiny/base/likelihood", "tiny/demo/rt/s0/likelihood"):
        ours, theirs = (json.loads((run / "stages" / key / "result.json").read_text()) for run in (two, one))
        assert ours["variants"] == theirs["variants"]
    assert "step 2/2" in (two / "stages/tiny/demo/rt/s0/train/stage.log").read_text()


def test_a_failing_job_names_its_stage_and_the_others_finish(tiny_model_dir, tmp_path, monkeypatch):
    from rtune.pipeline.kinds import likelihood

    experiment = load_experiment(write_experiment(tmp_path, tiny_model_dir))
    real = likelihood.run

    def fails_on_rt(ctx):
        if ctx.stage.cell.method == "rt":
            raise RtuneError("heldout4.jsonl: line 3: no completion")
        return real(ctx)

    monkeypatch.setattr(likelihood, "run", fails_on_rt)
    with pytest.raises(RtuneError, match=r"tiny/demo/rt/s0/likelihood: heldout4.jsonl: line 3: no completion"):
        run_experiment(experiment, tmp_path / "run", jobs=2)
    stages = tmp_path / "run" / "stages"
    assert (stages / "tiny/base/likelihood/stage.json").exists()
    assert (stages / "tiny/demo/rt/s0/train/stage.json").exists()
    assert not (stages / "tiny/demo/rt/s0/likelihood").exists()


def test_finished_stages_name_no_work_folder(tiny_model_dir, tmp_path):
    """Stages write into `<stage>.partial-<hash>` and are renamed when done: no file may point back there."""
    path = write_experiment(tmp_path, tiny_model_dir)
    experiment = yaml.safe_load(path.read_text())
    experiment["generation"] = {"max_new_tokens": 4}
    experiment["evals"] = {"responses": {"instructions": "heldout4.jsonl", "limit": 2}}
    path.write_text(yaml.safe_dump(experiment))
    run_dir = tmp_path / "run"
    outcome = run_experiment(load_experiment(path), run_dir)
    assert outcome["tiny/demo/rt/s0/train"] == outcome["tiny/demo/rt/s0/responses"] == "done"
    files = list((run_dir / "stages").rglob("*.json"))
    assert len(files) > 10 and [f for f in files if ".partial-" in f.read_text()] == []
    labels = json.loads((run_dir / "stages/tiny/demo/rt/s0/responses/labels.json").read_text())
    assert labels["outputs"] == "outputs.json" and labels["n"] == 2


def test_dry_run_lists_the_protocols_as_they_will_run(tiny_model_dir, tmp_path, shared_data, capsys):
    from rtune.pipeline.builder import build_plan
    from rtune.pipeline.protocols import protocol_rows

    path = write_experiment(tmp_path, tiny_model_dir)
    experiment = yaml.safe_load(path.read_text())
    experiment["training"]["config"] = "paper_qlora.yaml"
    experiment["data_dir"] = str(shared_data)
    experiment["methods"] = ["base", "rt", "urial"]
    experiment["generation"] = {"urial_prompts": {"urial": "data:urial/response_tuning_prompts/urial1kv4-4shot.txt"}}
    experiment["evals"] = {
        "core": {"tasks": ["arc_easy"], "protocol": "lm-eval"},
        "safety": {"sets": ["xstest"], "judge": "openai:j@http://127.0.0.1:9/v1"},
        "aspects": {
            "instructions": "heldout4.jsonl",
            "judge": "openai:j@http://127.0.0.1:9/v1",
            "template": "data:protocols/just_eval/multi_score.txt",
        },
    }
    path.write_text(yaml.safe_dump(experiment))
    loaded = load_experiment(path)
    assert protocol_rows(loaded, build_plan(loaded, tmp_path / "run")) == [
        ("train loss_normalization", "micro_batch"),  # the paper recipe's, whatever the experiment overrides
        ("train group_by_length", "False"),
        ("core protocol", "lm-eval"),
        ("aspects template", "data:protocols/just_eval/multi_score.txt"),
        ("aspects safety template", "rtune's own"),
        ("refusal judge prompt", "rtune's own"),
        ("urial prompt", "data:urial/response_tuning_prompts/urial1kv4-4shot.txt"),
    ]
    run_experiment(loaded, tmp_path / "run", dry_run=True)
    assert "protocols (docs/fidelity.md)" in capsys.readouterr().err


def test_dry_run_shows_cached_stages_and_what_an_edit_reruns(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from rtune.cli import main

    path = write_experiment(tmp_path, tiny_model_dir)
    run_dir = tmp_path / "run"
    assert set(run_experiment(load_experiment(path), run_dir, dry_run=True).values()) == {"new"}
    run_experiment(load_experiment(path), run_dir)

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["rtune", "run", str(path), "--out", str(run_dir), "--dry-run"])
    main()
    printed = capsys.readouterr().err
    assert printed.count("│ cached │") == 4 and "tiny/demo/rt/s0/train" in printed

    edited = write_experiment(tmp_path, tiny_model_dir, distractors=1)  # only the likelihood stages read this
    status = run_experiment(load_experiment(edited), run_dir, dry_run=True)
    assert status == {
        "data/demo": "cached",
        "tiny/demo/rt/s0/train": "cached",
        "tiny/base/likelihood": "changed",
        "tiny/demo/rt/s0/likelihood": "changed",
    }


def test_only_selects_a_cell_and_its_shared_data(tiny_model_dir, tmp_path):
    experiment = load_experiment(write_experiment(tmp_path, tiny_model_dir))
    plan = build_plan(experiment, tmp_path / "run")
    assert select(plan, ["tiny/demo/rt/*"]) == ["data/demo", "tiny/demo/rt/s0/train", "tiny/demo/rt/s0/likelihood"]
    assert select(plan, ["tiny/base"]) == ["tiny/base/likelihood"]
    with pytest.raises(RtuneError, match="no such cell"):
        select(plan, ["tiny/lima/*"])


def test_bad_experiment_files_name_the_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodels: {m: gemma-3-270m}\nmethods: [rt]\n")
    with pytest.raises(RtuneError, match="bad.yaml: .*need at least one entry under `datasets`"):
        load_experiment(path)
    path.write_text("name: x\nmodels: {m: gemma-3-270m}\nmethods: [base]\nevals: {likelihod: {}}\n")
    with pytest.raises(RtuneError, match="evals: .*unknown evaluation 'likelihod'; known: .*likelihood"):
        load_experiment(path)


@pytest.mark.parametrize("path", sorted((SHIPPED_CONFIGS / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_load(path):
    from rtune.pipeline.kinds.train import recipe_path

    experiment = load_experiment(path)
    assert load_experiment(path.stem).name == experiment.name  # by name, as in `rtune run cpu_gemma270m`
    grid = cells(experiment)
    assert grid and len({cell.name for cell in grid}) == len(grid)
    assert recipe_path(experiment) is not None


def _judge(request):
    """Pairwise: prefers whichever response is shown first (p = 0.7); aspects: fours and threes."""
    from openai_server import Reply

    if "[[RESPONSE A" in request.text:
        top = {"A": -0.3567, "B": -1.204}
        return Reply("A", tokens=[("A", top["A"], top)])
    return json.dumps(
        {
            name: {"rationale": "ok", "score": 4 if name == "clarity" else 3}
            for name in ("helpfulness", "clarity", "factuality", "depth", "engagement")
        }
    )


def test_judged_evaluations_span_cells_and_reach_the_report(tiny_model_dir, tmp_path, monkeypatch):
    from openai_server import OpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "test")
    path = write_experiment(tmp_path, tiny_model_dir)
    experiment = yaml.safe_load(path.read_text())
    with OpenAIServer(responder=_judge) as server:
        judge = f"openai:judge@{server.base_url}"
        experiment["generation"] = {"max_new_tokens": 4}
        experiment["evals"] = {
            "pairwise": {
                "instructions": "heldout4.jsonl",
                "limit": 2,
                "judge": judge,
                "reference": "base",
                "annotator": "rtune",
            },
            "aspects": {"instructions": "heldout4.jsonl", "limit": 2, "judge": judge},
        }
        path.write_text(yaml.safe_dump(experiment))
        run_dir = tmp_path / "run"
        outcome = run_experiment(load_experiment(path), run_dir, only=["tiny/demo/rt/s0"])
        assert outcome["tiny/demo/rt/s0/pairwise"] == "waiting"  # the reference cell has not generated yet
        assert outcome["tiny/demo/rt/s0/aspects"] == "done" and not (run_dir / "report.html").exists()
        outcome = run_experiment(load_experiment(path), run_dir)
    assert outcome["tiny/demo/rt/s0/pairwise"] == "done" and outcome["tiny/base/generate-heldout4"] == "done"
    pairwise = json.loads((run_dir / "stages/tiny/demo/rt/s0/pairwise/result.json").read_text())
    assert pairwise["n"] == 2 and pairwise["reference"] == "tiny/base"
    report = (run_dir / "report.md").read_text()
    assert (
        "| tiny/demo/rt/s0 | tiny/base |" in report and "| tiny/base | 3.00 [3.00, 3.00] | 4.00 [4.00, 4.00]" in report
    )


def write_benchmark_experiment(
    folder: Path, model_dir: Path, data: Path, max_new_tokens: int, core_limit: int, safety_limit: int
) -> Path:
    """Base model only, with ARC-Easy and XSTest (keyword judge) read from `data`."""
    experiment = {
        "name": "tiny-data",
        "data_dir": str(data),
        "models": {"tiny": str(model_dir)},
        "methods": ["base"],
        "generation": {"max_new_tokens": max_new_tokens},
        "evals": {
            "core": {"tasks": ["arc_easy"], "limit": core_limit},
            "safety": {"sets": ["xstest"], "limit": safety_limit},
        },
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


def test_core_and_safety_stages_read_the_data_dir(tiny_model_dir, tmp_path, shared_data):
    path = write_benchmark_experiment(
        tmp_path, tiny_model_dir, shared_data, max_new_tokens=4, core_limit=4, safety_limit=6
    )
    run_dir = tmp_path / "run"
    outcome = run_experiment(load_experiment(path), run_dir)
    assert outcome == {"tiny/base/core": "done", "tiny/base/safety": "done"}
    core = json.loads((run_dir / "stages/tiny/base/core/result.json").read_text())
    assert json.loads((run_dir / "stages/tiny/base/core/stage.json").read_text())["cpu_seconds"] > 0
    assert core["results"]["arc_easy"]["n"] == 4 and (run_dir / "stages/tiny/base/core" / core["document"]).exists()
    safety = json.loads((run_dir / "stages/tiny/base/safety/result.json").read_text())
    assert safety["items"] == 6 and safety["sets"]["xstest"]["false_refusal"]["n"] > 0
    report = (run_dir / "report.md").read_text()
    assert "| tiny/base | 0 |" in report and "(acc_norm " in report


def test_editing_a_benchmark_file_reruns_only_the_stages_that_read_it(tiny_model_dir, tmp_path, shared_data):
    data = tmp_path / "data"
    for relative in ("arc/arc_easy.jsonl", "xstest/xstest_prompts.csv"):
        (data / relative).parent.mkdir(parents=True)
        (data / relative).write_bytes((shared_data / relative).read_bytes())
    path = write_benchmark_experiment(tmp_path, tiny_model_dir, data, max_new_tokens=2, core_limit=2, safety_limit=2)
    run_dir = tmp_path / "run"
    run_experiment(load_experiment(path), run_dir)

    def pending() -> set[str]:
        plan = build_plan(load_experiment(path), run_dir)
        return {key for key in plan.stages if plan.status(key) != "cached"}

    assert pending() == set()
    arc = data / "arc/arc_easy.jsonl"
    lines = arc.read_text().splitlines(keepends=True)
    arc.write_text("".join(lines[:-1]))  # drop the last question
    assert pending() == {"tiny/base/core"}
    arc.write_text("".join(lines))
    xstest = data / "xstest/xstest_prompts.csv"
    xstest.write_text(xstest.read_text().replace("kill a Python process", "stop a Python process", 1))
    assert pending() == {"tiny/base/safety"}
