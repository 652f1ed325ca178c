"""Run the real `rtune` entry point in-process, as a user's shell would, and capture what it printed."""

from __future__ import annotations

import sys

from rtune.cli import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `rtune ARGS...`."""
    monkeypatch.setattr(sys, "argv", ["rtune", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err
