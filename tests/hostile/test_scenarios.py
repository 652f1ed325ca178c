"""Hostile cases that take more than one command: signals, a kill mid-write, a server that comes back."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus import build

from cli_runner import run_cli
from openai_server import Fault, OpenAIServer, Reply

RTUNE = [sys.executable, "-m", "rtune"]


def _rows(cache: Path) -> list[str]:
    """The answers a cache holds (read while another process may be writing it)."""
    if not cache.exists():
        return []
    with contextlib.closing(sqlite3.connect(cache, timeout=5)) as db:
        try:
            return [json.loads(blob)["text"] for (blob,) in db.execute("SELECT result FROM results")]
        except sqlite3.OperationalError:  # the writer has not created the table yet
            return []


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_ctrl_c_during_generate_says_interrupted_and_exits_130(tmp_path):
    """Row 1: Ctrl-C while a server hangs: one line and exit 130 at once, not a silent wait for the timeout."""
    d = build(tmp_path)
    with OpenAIServer(faults=lambda request: Fault(delay=30)) as server:
        args = [
            "generate",
            "--model",
            f"openai:m@{server.base_url}",
            "--input",
            str(d / "instructions.json"),
            "--out",
            str(d / "out/o.json"),
            "--timeout",
            "60",
        ]
        process = subprocess.Popen(RTUNE + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: server.requests, 60, "the first request")
        started = time.time()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 130 and time.time() - started < 10
    assert "interrupted" in err and "Traceback" not in err


def test_sigkill_during_generate_keeps_every_finished_answer(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """Row 11: a kill mid-batch (the default 32) loses only the rows still running; a rerun reuses the rest."""
    d = build(tmp_path)
    # the first prompt is the longest, so its row comes first in the batch and is handed back first
    prompts = ["Write a long essay about the first topic, please."] + [f"Topic {n}." for n in range(1, 32)]
    (d / "many.json").write_text(json.dumps([{"instruction": text} for text in prompts]))
    run_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(d / "many.json"),
        "--out",
        str(d / "out/free.json"),
        "--limit",
        "1",
        "--max-new-tokens",
        "8",
        "--cache",
        str(d / "out/free.sqlite"),
    )
    stop = json.loads((d / "out/free.json").read_text())[0]["output"][2:5]  # ends the first row at once
    args = [
        "generate",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(d / "many.json"),
        "--out",
        str(d / "out/o.json"),
        "--max-new-tokens",
        "400",
        "--stop",
        stop,
    ]
    cache = d / "out/generation_cache.sqlite"
    process = subprocess.Popen(RTUNE + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _rows(cache) or process.poll() is not None, 120, "the first finished answer")
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL, "the batch finished before any answer was committed"
    kept = len(_rows(cache))
    assert 1 <= kept < 32 and not (d / "out/o.json").exists()
    code, _, err = run_cli(monkeypatch, capsys, *args, "--limit", "1")  # the first row ended first: it is kept
    assert code == 0 and "(0 generated, 1 from cache" in " ".join(err.split())


def test_a_temp_file_left_by_a_kill_is_cleaned_by_the_next_write(tmp_path, monkeypatch, capsys):
    """Row 10: SIGKILL during the final atomic write keeps the old file; the next run removes the stale temp."""
    d = build(tmp_path)
    out = d / "out/r.jsonl"
    out.write_text("old\n")
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import os, signal, sys\nfrom rtune.io import atomic_write_text\n"
                "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
                "atomic_write_text(sys.argv[1], 'x' * 2_000_000)\n"
            ),
            str(out),
        ]
    )
    assert killed.returncode == -signal.SIGKILL and out.read_text() == "old\n"
    assert [p.name for p in d.glob("out/.r.jsonl.*.tmp")], "the kill left no temp file: nothing to test"
    live = d / "out" / ".r.jsonl.1.live.tmp"  # pid 1 is alive: a writer in progress, left alone
    live.write_text("busy")
    code, _, _ = run_cli(monkeypatch, capsys, "data", "build", str(d / "records.jsonl"), "--out", str(out))
    assert code == 0 and len(out.read_text().splitlines()) == 3
    assert sorted(p.name for p in d.glob("out/.*.tmp")) == [live.name]


def test_an_empty_reply_is_not_cached_and_is_asked_again_once_the_server_is_fixed(tmp_path, monkeypatch, capsys):
    """Row 5: an empty answer is written but never cached, so the rerun after the fix gets the real one."""
    d = build(tmp_path)
    broken = {"yes": True}
    args = ["generate", "--input", str(d / "instructions.json"), "--out", str(d / "out/o.json"), "--prompt", "plain"]

    def answer(request):
        return Reply("" if broken["yes"] and "colour" in request.text else f"echo: {request.text}")

    with OpenAIServer(responder=answer) as server:
        code, _, _ = run_cli(monkeypatch, capsys, *args, "--model", f"openai:m@{server.base_url}")
        assert code == 0 and _rows(d / "out/generation_cache.sqlite") == ["echo: Say hi."]
        broken["yes"] = False
        code, _, err = run_cli(monkeypatch, capsys, *args, "--model", f"openai:m@{server.base_url}")
    assert code == 0 and "(1 generated, 1 from cache" in " ".join(err.split())
    outputs = json.loads((d / "out/o.json").read_text())
    assert [row["output"] for row in outputs] == ["echo: Say hi.", "echo: Name a colour."]


def test_refresh_asks_again_for_the_empty_answers_an_older_cache_holds(tmp_path, monkeypatch, capsys):
    """Row 5: --refresh re-asks cached empty answers (an older rtune stored them) and keeps the good ones."""
    d = build(tmp_path)
    cache = d / "out/generation_cache.sqlite"
    with OpenAIServer() as server:
        args = [
            "generate",
            "--model",
            f"openai:m@{server.base_url}",
            "--input",
            str(d / "instructions.json"),
            "--out",
            str(d / "out/o.json"),
            "--prompt",
            "plain",
        ]
        assert run_cli(monkeypatch, capsys, *args)[0] == 0
        with contextlib.closing(sqlite3.connect(cache)) as db, db:
            key, blob = db.execute("SELECT key, result FROM results WHERE result LIKE '%colour%'").fetchone()
            emptied = json.dumps({**json.loads(blob), "text": ""})
            db.execute("UPDATE results SET result = ? WHERE key = ?", (emptied, key))
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0 and "(0 generated, 2 from cache" in " ".join(err.split())
        code, _, err = run_cli(monkeypatch, capsys, *args, "--refresh")
        assert code == 0 and "(1 generated, 1 from cache" in " ".join(err.split())
    assert sorted(_rows(cache)) == ["echo: Name a colour.", "echo: Say hi."]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the out-in-proc case stands in")
def test_a_read_only_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """Row 9: an output folder without write permission is one line, up front."""
    d = build(tmp_path)
    (d / "locked").mkdir(mode=0o555)
    code, _, err = run_cli(
        monkeypatch, capsys, "data", "build", str(d / "records.jsonl"), "--out", str(d / "locked/r.jsonl")
    )
    assert code == 2 and "locked/r.jsonl: cannot write there (Permission denied)" in err


def test_chat_save_refuses_bad_paths_in_one_line_and_the_chat_goes_on(tmp_path, monkeypatch, capsys):
    """Rows 7 and 9 for the chat REPL: `/save` passes the output guard; a refusal costs one line, not the chat."""
    d = build(tmp_path)
    (d / "out/link.json").symlink_to(d / "precious.jsonl")
    refused = {
        "out": "is a folder; expected a file name",
        "out/link.json": "is a symbolic link",
        "afile/chat.json": f"cannot write there: {d / 'afile'} is a file, not a folder",
        "/proc/rtune/chat.json": "cannot write there (",  # an absolute name: `d /` leaves it as it is
    }
    script = ["Say hi."] + [f"/save {d / name}" for name in refused] + [f"/save {d / 'out/chat.json'}", "/quit"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in script)))
    with OpenAIServer() as server:
        args = ["chat", "--model", f"openai:m@{server.base_url}", "--timeout", "5", "--max-retries", "0"]
        code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "Traceback" not in out + err
    said = [line.removeprefix("> ") for line in out.splitlines() if line.startswith(("> (not saved", "> (saved"))]
    assert len(said) == 5 and said[-1] == f"(saved 1 turns to {d / 'out/chat.json'})"
    for line, (name, why) in zip(said, refused.items(), strict=False):
        assert line.startswith(f"(not saved: {d / name}: {why}"), line
    assert json.loads((d / "out/chat.json").read_text())["messages"][-1]["content"] == "echo: Say hi."
    assert (d / "precious.jsonl").read_text() == '{"keep": "me"}\n' and (d / "out/link.json").is_symlink()
