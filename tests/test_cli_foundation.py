"""`rtune data …` and `rtune models …` through the real entry point: one clear line for bad input, no traceback."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_cli


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


GOOD = {"id": "a", "prompt": "Say hi.", "completion": "Hi!", "source": "t"}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([json.dumps(GOOD), '{"id": "b", "prompt": '], r"in.jsonl:2: malformed JSON"),
        ([{k: v for k, v in GOOD.items() if k != "prompt"}], r"in.jsonl: record 1: record has no field 'prompt'"),
    ],
)
def test_bad_record_files_give_one_line(monkeypatch, capsys, tmp_path, tiny_model_dir, rows, message):
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    code, out, err = run_cli(
        monkeypatch, capsys, "data", "render", path, "--method", "it", "--model", str(tiny_model_dir)
    )
    assert code == 2 and "Traceback" not in err
    assert __import__("re").search(message, " ".join(err.split()))


def test_empty_completions_are_skipped_with_a_count_or_fail_with_strict(monkeypatch, capsys, tmp_path):
    source = write_jsonl(
        tmp_path / "raw.jsonl", [{"prompt": "p", "completion": " "}, {"prompt": "q", "completion": "c"}]
    )
    out_file = tmp_path / "out.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "data", "build", source, "--out", str(out_file))
    assert code == 0 and "wrote 1 records" in err and "skipped 1 with an empty" in " ".join(err.split())
    code, _, err = run_cli(
        monkeypatch, capsys, "data", "build", source, "--out", str(tmp_path / "strict.jsonl"), "--strict"
    )
    assert code == 2 and "has an empty completion" in err and not (tmp_path / "strict.jsonl").exists()


def test_unknown_source_and_model_list_the_known_ones(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "data", "build", "lima2", "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "known sources: lima, alpaca" in err
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD])
    code, _, err = run_cli(monkeypatch, capsys, "data", "render", path, "--method", "rt", "--model", "gemma-270")
    assert code == 2 and "gemma-3-270m, smollm2-135m-instruct" in " ".join(err.split())
    code, _, err = run_cli(monkeypatch, capsys, "data", "render", path, "--method", "sft", "--model", "gemma-3-270m")
    assert code == 2 and "--method must be one of it, rt" in err


def test_unreadable_file(monkeypatch, capsys, tmp_path, tiny_model_dir):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "data",
        "render",
        str(tmp_path / "nope.jsonl"),
        "--method",
        "it",
        "--model",
        str(tiny_model_dir),
    )
    assert code == 2 and "nope.jsonl: no such file" in err and "Traceback" not in err


def test_render_json_output_is_exact(monkeypatch, capsys, tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD])
    code, out, err = run_cli(
        monkeypatch, capsys, "data", "render", path, "--method", "it", "--model", str(tiny_model_dir), "--json"
    )
    assert code == 0
    row = json.loads(out)
    assert row["text"] == "<|user|>\nSay hi.\n<|assistant|>\nHi!<eos>\n"
    start, end = row["supervised"][0]
    assert row["text"][start:end] == "Hi!<eos>\n"
    assert len(row["input_ids"]) == len(row["labels"]) and row["labels"][0] == -100


def test_human_view_shows_the_text_and_counts(monkeypatch, capsys, tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD])
    code, out, err = run_cli(
        monkeypatch, capsys, "data", "render", path, "--method", "rt", "--model", str(tiny_model_dir)
    )
    assert code == 0 and "<|assistant|>" in out and "Hi!<eos>" in out and "supervised" in out
    assert "<|user|>" not in out and "1 rendered (rt)" in err


def test_models_prepare_prints_the_folder_last(monkeypatch, capsys, tiny_model_dir, tmp_path):
    code, out, _ = run_cli(monkeypatch, capsys, "models", "prepare", str(tiny_model_dir))
    assert code == 0 and out.strip().splitlines()[-1] == str(tiny_model_dir)
    code, _, err = run_cli(monkeypatch, capsys, "models", "prepare", str(tmp_path))
    assert code == 2 and "not a model folder" in err


def test_error_messages_keep_square_brackets(monkeypatch, capsys, tmp_path):
    path = tmp_path / "[odd].jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "data", "build", str(path), "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "[odd].jsonl: no such file" in err
