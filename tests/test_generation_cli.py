"""`rtune generate` end to end: inputs, output format, cache reuse, a real kill and resume, URIAL on gemma-3-270m."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from cli_runner import run_cli
from openai_server import Fault, OpenAIServer


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_record_file_on_the_tiny_model_then_everything_from_cache(monkeypatch, capsys, tmp_path, tiny_model_dir):
    source = _jsonl(
        tmp_path / "records.jsonl",
        [
            {"id": f"r{i}", "prompt": f"Say something about number {i}.", "completion": "x", "source": "t"}
            for i in range(5)
        ],
    )
    out = tmp_path / "run" / "outputs.json"
    args = (
        "generate",
        "--model",
        str(tiny_model_dir),
        "--input",
        source,
        "--out",
        str(out),
        "--max-new-tokens",
        "6",
        "--batch-size",
        "2",
    )
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "5 generated, 0 from cache" in err and "5 stopped at --max-new-tokens" in err
    rows = json.loads(out.read_text())
    assert [row["instruction"] for row in rows] == [f"Say something about number {i}." for i in range(5)]
    assert all(
        set(row)
        == {"instruction", "output", "generator", "dataset", "id", "finish_reason", "output_tokens", "precision"}
        for row in rows
    )
    assert all(row["finish_reason"] == "length" and row["output_tokens"] == 6 for row in rows)
    assert all(row["precision"] == "fp32" for row in rows)  # the default, batch-invariant
    assert rows[0]["generator"] == tiny_model_dir.name and rows[0]["dataset"] == "records" and rows[0]["id"] == "r0"
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "0 generated, 5 from cache" in err
    assert json.loads(out.read_text()) == rows
    code, _, err = run_cli(monkeypatch, capsys, *args, "--prompt", "plain", "--name", "raw")
    assert code == 0 and "5 generated" in err and json.loads(out.read_text())[0]["generator"] == "raw"


def test_just_eval_carries_id_and_category_over_an_openai_server(monkeypatch, capsys, tmp_path, shared_data):
    out = tmp_path / "just.json"
    with OpenAIServer() as server:
        code, _, err = run_cli(
            monkeypatch,
            capsys,
            "generate",
            "--model",
            "openai:served-model",
            "--base-url",
            server.base_url,
            "--input",
            "just_eval",
            "--data-dir",
            str(shared_data),
            "--limit",
            "3",
            "--out",
            str(out),
        )
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert [(row["id"], row["category"], row["dataset"]) for row in rows] == [
        (0, "regular", "helpful_base"),
        (1, "regular", "helpful_base"),
        (2, "regular", "helpful_base"),
    ]
    assert rows[1]["output"] == "echo: How did US states get their names?" and rows[0]["generator"] == "served-model"
    assert all(r.endpoint == "chat" for r in server.requests)


def test_urial_over_an_openai_server_sends_raw_text_with_stop_strings(monkeypatch, capsys, tmp_path, shared_data):
    out = tmp_path / "urial.json"
    with OpenAIServer(responder=lambda r: "Paris is the capital.\n```\n\n# Query:\n```\nnext") as server:
        code, _, err = run_cli(
            monkeypatch,
            capsys,
            "generate",
            "--model",
            f"openai:base@{server.base_url}",
            "--input",
            "alpaca_eval",
            "--data-dir",
            str(shared_data),
            "--limit",
            "2",
            "--prompt",
            "urial_r",
            "--out",
            str(out),
        )
    assert code == 0, err
    assert [row["output"] for row in json.loads(out.read_text())] == ["Paris is the capital."] * 2
    body = server.requests[0].body
    assert server.requests[0].endpoint == "completions" and body["prompt"].startswith("# Instruction")
    assert body["stop"] == ["# Query:", "# Answer:", "# Instruction"] and body["max_tokens"] == 2048
    assert json.loads(out.read_text())[0]["generator"] == "base-urial_r"


def test_bad_inputs_are_one_line_errors(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("RTUNE_DATA_DIR", raising=False)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        "openai:m@http://127.0.0.1:9/v1",
        "--input",
        "alpaca_eval",
        "--out",
        str(tmp_path / "o.json"),
    )
    assert code == 2 and "could not load 'tatsu-lab/alpaca_eval'" in err and "offline, pass --data-dir" in err
    bad = _jsonl(tmp_path / "bad.jsonl", [{"instruction": "fine"}, {"text": "no instruction"}])
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        "openai:m@http://127.0.0.1:9/v1",
        "--input",
        bad,
        "--out",
        str(tmp_path / "o.json"),
    )
    assert code == 2 and "bad.jsonl:2: expected a non-empty 'instruction'" in err
    good = _jsonl(tmp_path / "good.jsonl", [{"instruction": "fine"}])
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        "openai:m@http://127.0.0.1:9/v1",
        "--input",
        good,
        "--out",
        str(tmp_path / "o.json"),
        "--prompt",
        "nope",
    )
    assert code == 2 and "prompt format 'nope': not one of chat, tulu, plain, urial, urial_r, 0shot" in err


def _cached_rows(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _kill_once_cached(command: list[str], cache, rows: int) -> int:
    """Start `command`, SIGKILL it (no cleanup at all) once its cache holds `rows` answers; the answers kept."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _cached_rows(cache) < rows and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run ended (exit {process.returncode}) before the kill"
    return _cached_rows(cache)


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    """SIGKILL mid-run, then rerun: only the unfinished items are requested again."""
    source = _jsonl(tmp_path / "in.jsonl", [{"instruction": f"item {i}"} for i in range(30)])
    out = tmp_path / "out.json"
    cache = tmp_path / "generation_cache.sqlite"
    with OpenAIServer(faults=lambda r: Fault(delay=0.15)) as server:
        command = [
            sys.executable,
            "-m",
            "rtune",
            "generate",
            "--model",
            f"openai:m@{server.base_url}",
            "--input",
            source,
            "--out",
            str(out),
            "--concurrency",
            "1",
        ]
        finished = _kill_once_cached(command, cache, 5)
        assert 5 <= finished < 30 and not out.exists()
        served = len(server.requests)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"{30 - finished} generated, {finished} from cache" in done.stderr
        asked_again = [r.text for r in server.requests[served:]]
    assert len(asked_again) == 30 - finished and len(set(asked_again)) == len(asked_again)
    assert [row["output"] for row in json.loads(out.read_text())] == [f"echo: item {i}" for i in range(30)]


def test_a_local_model_killed_mid_run_resumes_to_the_uninterrupted_outputs(tmp_path, tiny_model_dir):
    """SIGKILL a real `rtune generate` on the hf backend (default precision) once some answers are cached; the
    rerun batches the rest differently (another batch size too), yet every row is the uninterrupted run's."""
    source = _jsonl(
        tmp_path / "in.jsonl", [{"instruction": "Tell me more. " * (i % 5) + f"Item {i}."} for i in range(40)]
    )

    def command(folder, batch_size: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rtune",
            "generate",
            "--model",
            str(tiny_model_dir),
            "--input",
            source,
            "--out",
            str(folder / "out.json"),
            "--max-new-tokens",
            "48",
            "--batch-size",
            batch_size,
        ]

    killed = tmp_path / "killed"
    kept = _kill_once_cached(command(killed, "3"), killed / "generation_cache.sqlite", 3)
    assert 3 <= kept < 40 and not (killed / "out.json").exists()
    resumed = subprocess.run(command(killed, "32"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{40 - kept} generated, {kept} from cache" in " ".join(resumed.stderr.split())
    whole = subprocess.run(command(tmp_path / "whole", "32"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert json.loads((killed / "out.json").read_text()) == json.loads((tmp_path / "whole" / "out.json").read_text())


def test_bf16_is_an_opt_in_that_warns_in_one_line_and_is_recorded(monkeypatch, capsys, tmp_path, tiny_model_dir):
    import rtune.generation.hf as hf

    monkeypatch.setattr(hf, "_WARNED", set())  # a warning given earlier in this process must not hide this one
    source = _jsonl(tmp_path / "in.jsonl", [{"instruction": f"Say something about number {i}."} for i in range(3)])
    out = tmp_path / "out.json"
    args = ("generate", "--model", str(tiny_model_dir), "--input", source, "--out", str(out), "--max-new-tokens", "4")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "warning" not in err
    code, _, err = run_cli(monkeypatch, capsys, *args, "--precision", "bf16")
    assert code == 0 and "3 generated, 0 from cache" in " ".join(err.split())  # fp32 answers are not bf16 answers
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "depend on which prompts share a batch" in warnings[0]
    assert {row["precision"] for row in json.loads(out.read_text())} == {"bf16"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["urial", "urial_r"])
def test_gemma_answers_twenty_alpaca_eval_instructions_with_urial(monkeypatch, capsys, tmp_path, shared_data, mode):
    out = tmp_path / f"{mode}.json"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        "gemma-3-270m",
        "--input",
        "alpaca_eval",
        "--limit",
        "20",
        "--prompt",
        mode,
        "--data-dir",
        str(shared_data),
        "--out",
        str(out),
        "--max-new-tokens",
        "32",
    )
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert len(rows) == 20 and all(row["generator"] == f"gemma-3-270m-{mode}" for row in rows)
    assert sum(bool(row["output"]) for row in rows) >= 18  # a base model answers in assistant style
    assert not any("# Query:" in row["output"] or row["output"].endswith("```") for row in rows)
