"""Sources → canonical records, on the real shared files and on local files of every layout."""

from __future__ import annotations

import json

import pytest

from rtune.data.records import read_records, write_records
from rtune.data.sources import build_records, row_to_pair
from rtune.errors import RtuneError
from rtune.io import read_jsonl


def test_lima_gives_the_first_1000_single_turn_examples_in_order(shared_data):
    built = build_records("lima", shared_data)
    reference = read_jsonl(shared_data / "lima" / "lima_train_1000.jsonl")
    assert len(built.records) == 1000
    assert [(r.prompt, r.completion) for r in built.records] == [(x["instruction"], x["response"]) for x in reference]
    assert built.records[0].id == "lima-0" and built.records[-1].id == "lima-999"


def test_alpaca_joins_input_after_a_blank_line_and_says_it_is_a_sample(shared_data):
    built = build_records("alpaca", shared_data)
    raw = json.loads((shared_data / "alpaca" / "alpaca_data_1k.json").read_text())
    assert len(built.records) == 1000 and "1,000-example" in built.note
    with_input = next(i for i, row in enumerate(raw) if row["input"].strip())
    assert (
        built.records[with_input].prompt == raw[with_input]["instruction"] + "\n\n" + raw[with_input]["input"].strip()
    )


def test_safety_tuned_llamas_loads(shared_data):
    built = build_records("safety-tuned-llamas", shared_data)
    assert len(built.records) == 2483 and built.records[0].source == "safety-tuned-llamas"


def test_sampling_is_seeded_and_ids_are_stable(shared_data):
    first = build_records("lima", shared_data, max_examples=64, seed=0).records
    again = build_records("lima", shared_data, max_examples=64, seed=0).records
    other = build_records("lima", shared_data, max_examples=64, seed=1).records
    everything = {r.id: r for r in build_records("lima", shared_data).records}
    assert [r.id for r in first] == [r.id for r in again] and len(first) == 64
    assert [r.id for r in first] != [r.id for r in other]
    assert all(everything[r.id] == r for r in first)  # same id, same content as in the full set


def test_missing_named_file_in_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RtuneError, match="dataset 'dolly': dolly/databricks-dolly-15k.jsonl not found under"):
        build_records("dolly", tmp_path)


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(RtuneError, match="known sources: lima, alpaca, alpaca-cleaned, dolly, safety-tuned-llamas"):
        build_records("limaa")


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": "p", "completion": "c"}, ("p", "c")),
        ({"instruction": "i", "input": "x", "output": "o"}, ("i\n\nx", "o")),
        ({"instruction": "i", "context": "", "response": "r"}, ("i", "r")),
        ({"instruction": "i", "context": "ctx", "response": "r"}, ("i\n\nctx", "r")),
        (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "u"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            ("u", "a"),
        ),
        ({"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]}, ("u", "a")),
        ({"conversations": ["u", "a", "u2", "a2"]}, ("u", "a")),
    ],
)
def test_layouts_are_recognised(row, expected):
    pair = row_to_pair(row, "here")
    assert (pair.prompt, pair.completion) == expected


def test_local_files_with_field_mapping(tmp_path):
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text('question,answer\n"What, exactly?","This."\n')
    built = build_records(str(csv_file), prompt_field="question", completion_field="answer")
    assert [(r.id, r.prompt, r.completion) for r in built.records] == [("pairs-0", "What, exactly?", "This.")]
    with pytest.raises(RtuneError, match=r"row 1: no field 'query' \(fields present: answer, question\)"):
        build_records(str(csv_file), prompt_field="query", completion_field="answer")


def test_unrecognised_layout_names_the_fields(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"q": "a", "a": "b"}\n')
    with pytest.raises(RtuneError, match=r"odd.jsonl:1: cannot tell prompt from completion \(fields present: a, q\)"):
        build_records(str(path))


def test_records_round_trip_and_validation(tmp_path):
    path = tmp_path / "r.jsonl"
    write_records(path, build_records(str(_write(tmp_path / "in.jsonl", [{"prompt": "p", "completion": "c"}]))).records)
    assert read_jsonl(path) == [{"id": "in-0", "prompt": "p", "completion": "c", "source": "in"}]
    _write(path, [{"id": "a", "prompt": "p", "source": "s"}])
    with pytest.raises(RtuneError, match=r"r.jsonl: record 1: record has no field 'completion'"):
        read_records(path)
    _write(
        path,
        [
            {"id": "a", "prompt": "p", "completion": "", "source": "s"},
            {"id": "b", "prompt": "p", "completion": "c", "source": "s"},
        ],
    )
    loaded = read_records(path)
    assert [r.id for r in loaded.records] == ["b"] and loaded.skipped_empty == 1
    with pytest.raises(RtuneError, match="record 'a' has an empty completion"):
        read_records(path, strict=True)
    _write(path, [{"id": "a", "prompt": "p", "completion": "c", "source": "s"}] * 2)
    with pytest.raises(RtuneError, match="duplicate id 'a'"):
        read_records(path)


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_hf_source_goes_through_datasets(tmp_path, monkeypatch):
    """`hf:<id>` uses datasets.load_dataset; a local dataset folder exercises the same call offline."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    _write(
        folder / "train.jsonl",
        [{"instruction": "i", "input": "", "output": "o"}, {"instruction": "j", "input": "x", "output": "p"}],
    )
    built = build_records(f"hf:{folder}")
    assert [(r.prompt, r.completion) for r in built.records] == [("i", "o"), ("j\n\nx", "p")]
    with pytest.raises(RtuneError, match="could not load .* from the Hugging Face hub"):
        build_records(f"hf:{tmp_path / 'absent'}")
