"""Every case of the hostile table through the real `rtune` entry point, with the checks all of them share."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import sqlite3
import time
from pathlib import Path

import pytest
from cases import CASES, Case
from corpus import build

from cli_runner import run_cli
from openai_server import OpenAIServer


def snapshot(d: Path) -> dict[str, bytes | str]:
    """Every file and link outside the run folder `d/out`, with its content (links: their target)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(d.rglob("*")):
        relative = path.relative_to(d)
        if relative.parts[0] == "out":
            continue
        if path.is_symlink():
            found[str(relative)] = f"-> {path.readlink()}"
        elif path.is_file():
            found[str(relative)] = path.read_bytes()
    return found


def empty_cached_answers(d: Path) -> list[str]:
    """Cache entries holding an empty answer, in every generation or judge cache under `d`."""
    empty = []
    for path in d.rglob("*.sqlite"):
        if path.is_symlink():
            continue
        with contextlib.closing(sqlite3.connect(path)) as db:
            empty += [
                f"{path}: {key}"
                for key, result in db.execute("SELECT key, result FROM results")
                if not json.loads(result)["text"].strip()
            ]
    return empty


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The model specs loaded by the command (a refused command must load none)."""
    import rtune.models

    loaded: list[str] = []
    real = rtune.models.load_model

    def counting(spec, *args, **kwargs):
        model = real(spec, *args, **kwargs)
        loaded.append(spec)
        return model

    monkeypatch.setattr(rtune.models, "load_model", counting)
    return loaded


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case: Case, tmp_path, tiny_model_dir, monkeypatch, capsys, loads):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-users-own-key")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RTUNE_DATA_DIR", raising=False)
    d = build(tmp_path)
    if case.setup:
        case.setup(d, tiny_model_dir)
    before = snapshot(d)
    with OpenAIServer(case.server.responder, case.server.faults) if case.server else contextlib.nullcontext() as server:
        url = server.base_url if server else "http://127.0.0.1:9/v1"
        args = case.args.format(d=d, model=tiny_model_dir, url=url, credentials_url=url.replace("//", "//u:SECRET@"))
        started = time.monotonic()
        code, out, err = run_cli(monkeypatch, capsys, *shlex.split(args))
        took = time.monotonic() - started

    assert code == case.code, f"exit {code}, expected {case.code}; stderr:\n{err}"
    assert case.seconds is None or took < case.seconds, f"took {took:.1f} s (at most {case.seconds})"
    assert "Traceback" not in out + err
    if case.code == 0:
        assert re.search(case.message, err), err
    elif case.row == "1":  # click's usage message
        assert re.search(case.message, out + err), out + err
    else:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and re.search(case.message, errors[0]), err
        assert [line for line in err.splitlines() if line.strip() and not line.startswith(("error:", "waiting:"))] == []
        assert loads == [], "a refused command loaded a model"
    if case.notice:
        assert any(re.search(case.notice, line) for line in err.splitlines() if line.startswith("waiting:")), err
    assert "nan" not in (out + err).lower().split()
    assert snapshot(d) == before, "a file outside the run folder changed"
    assert empty_cached_answers(d) == []
    if case.check:
        case.check(d, server)
