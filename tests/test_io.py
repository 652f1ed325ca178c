"""Line-numbered errors and atomic writes."""

from __future__ import annotations

import os

import pytest

from rtune.errors import RtuneError
from rtune.io import append_jsonl, atomic_write_text, read_json, read_jsonl, stable_hash


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(RtuneError, match=r"bad.jsonl:3: malformed JSON"):
        read_jsonl(path)


def test_non_object_line_and_bad_json(tmp_path):
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(RtuneError, match=r"list.jsonl:1: expected a JSON object, got list"):
        read_jsonl(tmp_path / "list.jsonl")
    (tmp_path / "bad.json").write_text('[\n{"a": 1},\n{oops}\n]')
    with pytest.raises(RtuneError, match=r"bad.json:3: malformed JSON"):
        read_json(tmp_path / "bad.json")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(RtuneError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(RtuneError, match="is a directory"):
        read_jsonl(tmp_path)
    (tmp_path / "latin1.jsonl").write_bytes(b'{"a": "\xe9"}\n')
    with pytest.raises(RtuneError, match="not UTF-8"):
        read_jsonl(tmp_path / "latin1.jsonl")


def test_truncated_tail_of_an_append_log_is_tolerated_only_when_asked(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"i": 1})
    with path.open("a") as handle:
        handle.write('{"i": 2')  # a crash in the middle of a write
    assert read_jsonl(path, tolerate_truncated_tail=True) == [{"i": 1}]
    with pytest.raises(RtuneError):
        read_jsonl(path)
    append_jsonl(path, {"i": 3})  # resuming drops the cut-short line instead of gluing onto it
    assert read_jsonl(path) == [{"i": 1}, {"i": 3}]


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
