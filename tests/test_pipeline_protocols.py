"""Protocols in an experiment: a refine stage between data and training, and the judges' protocol settings in the
plan (prompt files hashed by their text, keys unchanged when no protocol is named)."""

from __future__ import annotations

import json
import re
import shutil

import yaml

from cli_runner import run_cli
from openai_server import Fault, OpenAIServer, Reply
from rtune.data.records import read_records
from rtune.judges.alpaca_eval_annotator import installed_version
from rtune.pipeline.builder import build_plan
from rtune.pipeline.experiment import load_experiment
from rtune.pipeline.runner import run_experiment

DEAD = "openai:judge@http://127.0.0.1:9/v1"  # never called: these plans are only built


def _experiment(folder, model_dir, **changes) -> dict:
    experiment = {
        "name": "proto",
        "models": {"tiny": str(model_dir)},
        "methods": ["base", "rt"],
        "datasets": {"demo": {"source": "demo", "max_examples": 8}},
        "training": {
            "overrides": {
                "max_steps": 1,
                "batch_size": 4,
                "max_length": 64,
                "lora_r": 4,
                "lora_alpha": 8,
                "save_steps": 1,
                "check_memory": False,
            }
        },
    }
    experiment.update(changes)
    (folder / "exp.yaml").write_text(yaml.safe_dump(experiment))
    return experiment


def _plan(folder, model_dir, **changes):
    _experiment(folder, model_dir, **changes)
    return build_plan(load_experiment(folder / "exp.yaml"), folder / "run")


def test_refine_sits_between_the_data_and_the_train_stages(tiny_model_dir, tmp_path, shared_data):
    prompt = shared_data / "protocols" / "response_tuning" / "refine_response.txt"
    plain = {"source": "demo", "max_examples": 8, "safety_mixtures": [0, 2]}
    refined = {**plain, "refine": {"refiner": DEAD, "prompt_file": str(prompt)}}
    plan = _plan(tmp_path, tiny_model_dir, data_dir=str(shared_data), datasets={"demo": refined, "plain": plain})
    deps = {key: stage.deps for key, stage in plan.stages.items()}
    assert deps["data/demo"] == () and deps["data/demo+refined"] == ("data/demo",)
    assert deps["data/demo+refined+safety2"] == ("data/demo+refined",)  # refusals are mixed in after refinement
    assert deps["tiny/demo/rt/s0/train"] == ("data/demo+refined",)
    assert deps["tiny/demo/rt+safety2/s0/train"] == ("data/demo+refined+safety2",)
    assert deps["tiny/plain/rt/s0/train"] == ("data/plain",) and "data/plain+refined" not in deps
    assert plan.stages["data/demo+refined"].inputs["prompt"] == {"file": prompt.read_text(encoding="utf-8").strip()}
    assert plan.stages["data/demo+refined"].inputs["settings"] == {"refiner": DEAD, "max_new_tokens": 8192}
    assert plan.hashes["data/demo"] == plan.hashes["data/plain"]  # the unrefined records are the same stage's

    (tmp_path / "alone").mkdir()
    alone = _plan(tmp_path / "alone", tiny_model_dir, data_dir=str(shared_data), datasets={"plain": plain})
    for key in ("data/plain", "data/plain+safety2", "tiny/plain/rt/s0/train", "tiny/plain/rt+safety2/s0/train"):
        assert alone.hashes[key] == plan.hashes[key]  # a refined neighbour changes nothing

    moved = tmp_path / "elsewhere" / "prompt.txt"
    moved.parent.mkdir()
    shutil.copy(prompt, moved)
    again = _plan(
        tmp_path,
        tiny_model_dir,
        data_dir=str(shared_data),
        datasets={"demo": {**plain, "refine": {"refiner": DEAD, "prompt_file": str(moved)}}, "plain": plain},
    )
    assert again.hashes["data/demo+refined"] == plan.hashes["data/demo+refined"]  # hashed by text, not by path
    other = _plan(
        tmp_path,
        tiny_model_dir,
        data_dir=str(shared_data),
        datasets={"demo": {**plain, "refine": {"refiner": DEAD}}, "plain": plain},
    )
    assert other.hashes["data/demo+refined"] != plan.hashes["data/demo+refined"]  # rtune's own prompt instead


def _refiner(request) -> Reply:
    answer = re.search(r"=== Assistant reply ===\n(.*)\n=== End of assistant reply", request.text, re.S).group(1)
    return Reply(f"Tighter wording.\nRefined response: {answer.strip()} (refined)")


def test_a_refined_dataset_trains_on_the_refined_records(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with OpenAIServer(responder=_refiner) as server:
        _experiment(
            tmp_path,
            tiny_model_dir,
            methods=["rt"],
            datasets={
                "demo": {"source": "demo", "max_examples": 8, "refine": {"refiner": f"openai:r@{server.base_url}"}}
            },
        )
        experiment = load_experiment(tmp_path / "exp.yaml")
        outcome = run_experiment(experiment, tmp_path / "run")
        assert outcome == {"data/demo": "done", "data/demo+refined": "done", "tiny/demo/rt/s0/train": "done"}
        assert len(server.requests) == 8 and all(r.body["max_tokens"] == 8192 for r in server.requests)
        assert run_experiment(experiment, tmp_path / "run") == dict.fromkeys(outcome, "cached")
    stages = tmp_path / "run" / "stages"
    records = read_records(stages / "data" / "demo+refined" / "records.jsonl").records
    assert len(records) == 8 and all(r.completion.endswith(" (refined)") for r in records)
    assert all(r.meta["source_completion"] + " (refined)" == r.completion for r in records)
    result = json.loads((stages / "data" / "demo+refined" / "result.json").read_text())
    assert result["extraction_rate"] == 1.0 and result["changed"] == 8
    train = json.loads((stages / "tiny" / "demo" / "rt" / "s0" / "train" / "stage.json").read_text())
    assert list(train["deps"]) == ["data/demo+refined"]
    assert "Response refinement" in (tmp_path / "run" / "report.md").read_text()


def test_server_patience_reaches_the_refiner_and_no_stage_hash(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """`server:` in the experiment and `rtune run --timeout/--max-retries` (which win) set how long a refiner or
    judge server is waited for; how patient a run is changes no stage's hash, so changing it reruns nothing."""
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with OpenAIServer(faults=lambda request: Fault(delay=30)) as server:
        refined = {"source": "demo", "max_examples": 8, "refine": {"refiner": f"openai:r@{server.base_url}"}}
        _experiment(tmp_path, tiny_model_dir, methods=["rt"], datasets={"demo": refined})
        default = build_plan(load_experiment(tmp_path / "exp.yaml"), tmp_path / "run").hashes
        _experiment(tmp_path, tiny_model_dir, methods=["rt"], datasets={"demo": refined}, server={"timeout": 60})
        experiment = load_experiment(tmp_path / "exp.yaml", max_retries=0)
        assert experiment.server.model_dump() == {"timeout": 60, "max_retries": 0}
        assert build_plan(experiment, tmp_path / "run").hashes == default
        args = ["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run"), "--timeout", "0.5"]
        code, _, err = run_cli(monkeypatch, capsys, *args, "--max-retries", "0")
    assert code == 2, err
    assert "no answer within 0.5 s (1 tries)" in " ".join(err.split()) and "Traceback" not in err


def test_judge_protocols_enter_the_plan_only_when_named(tiny_model_dir, tmp_path, shared_data):
    protocols = shared_data / "protocols"
    evals = {
        "pairwise": {"instructions": "heldout", "judge": DEAD, "reference": "base", "annotator": "rtune"},
        "aspects": {"instructions": "heldout", "judge": DEAD},
        "safety": {"sets": ["xstest"], "judge": DEAD, "limit": 2},
    }
    plan = _plan(tmp_path, tiny_model_dir, data_dir=str(shared_data), evals=evals)
    assert plan.stages["tiny/demo/rt/s0/pairwise"].inputs == {
        "settings": {"judge": DEAD, "mode": "weighted", "limit": None, "reference": "tiny/base"}
    }
    assert plan.stages["tiny/base/aspects"].inputs == {"settings": {"judge": DEAD, "limit": None}}
    assert "judge_prompt" not in plan.stages["tiny/base/safety"].inputs
    assert "judge_retries" not in plan.stages["tiny/base/safety"].inputs["settings"]

    named = {
        "pairwise": {**evals["pairwise"], "annotator": "alpaca_eval_2"},
        "aspects": {
            **evals["aspects"],
            "template": "data:protocols/just_eval/multi_score.txt",
            "safety_template": "data:protocols/just_eval/safety_score.txt",
            "system_prompt": "S",
        },
        "safety": {
            **evals["safety"],
            "judge_prompt": "data:protocols/response_tuning/refusal_judge.txt",
            "judge_retries": 0,
        },
    }
    if installed_version() is None:  # without alpaca-eval the plan cannot name AlpacaEval's config
        named["pairwise"]["annotator"] = "rtune"
    plan = _plan(tmp_path, tiny_model_dir, data_dir=str(shared_data), evals=named)
    aspects = plan.stages["tiny/base/aspects"].inputs
    assert aspects["settings"]["system_prompt"] == "S"
    assert aspects["templates"] == {
        "template": (protocols / "just_eval" / "multi_score.txt").read_text(),
        "safety_template": (protocols / "just_eval" / "safety_score.txt").read_text(),
    }
    safety = plan.stages["tiny/base/safety"].inputs
    assert safety["judge_prompt"] == (protocols / "response_tuning" / "refusal_judge.txt").read_text().strip()
    assert safety["settings"]["judge_retries"] == 0
    pairwise = plan.stages["tiny/demo/rt/s0/pairwise"].inputs["settings"]
    if named["pairwise"]["annotator"] == "alpaca_eval_2":
        assert "mode" not in pairwise and pairwise["annotator"] == "alpaca_eval_2"
        assert pairwise["alpaca_eval"]["annotator"] == "weighted_alpaca_eval_gpt4_turbo"
        assert pairwise["alpaca_eval"]["alpaca_eval"] == "0.6.6"


def test_a_record_file_under_the_data_dir_is_named_with_data_prefix(tiny_model_dir, tmp_path):
    """The likelihood metric's records as `data:` + a path, like prompt files: read, and hashed by content."""
    data = tmp_path / "data"
    (data / "ae").mkdir(parents=True)
    rows = [{"instruction": f"Question {n}?", "output": f"Answer number {n}."} for n in range(4)]
    (data / "ae/refs.json").write_text(json.dumps(rows))
    experiment = {
        "name": "records",
        "data_dir": str(data),
        "models": {"tiny": str(tiny_model_dir)},
        "methods": ["base"],
        "evals": {"likelihood": {"records": "data:ae/refs.json", "distractors": 2, "max_response_tokens": 8}},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    [stage] = [s for s in build_plan(load_experiment(path), tmp_path / "run").stages.values() if s.kind == "likelihood"]
    first = stage.inputs["content"]
    (data / "ae/refs.json").write_text(json.dumps(rows[:3]))
    [stage] = [s for s in build_plan(load_experiment(path), tmp_path / "run").stages.values() if s.kind == "likelihood"]
    assert stage.inputs["content"] != first and stage.inputs["records"] == "data:ae/refs.json"
    outcome = run_experiment(load_experiment(path), tmp_path / "run")
    assert outcome == {"tiny/base/likelihood": "done"}
    assert json.loads((tmp_path / "run/stages/tiny/base/likelihood/result.json").read_text())["n_items"] == 3
