"""Training data: token-level masks for IT and RT, method/data checks, batching and sampling."""

from __future__ import annotations

import json

import pytest

from rtune.data.records import Record
from rtune.errors import RtuneError
from rtune.models import load_tokenizer
from rtune.templates import IGNORE_INDEX
from rtune.training.data import LengthGroupedShuffleSampler, PaddingCollator, build_dataset, load_training_records

RECORD = Record(id="x", prompt="Give me three tips.", completion="1. Sleep well.\n2. Drink water.", source="t")


def _split(tokenizer, input_ids, labels):
    """(decoded unsupervised prefix, decoded supervised tokens) of one example."""
    supervised = [t for t, label in zip(input_ids, labels, strict=False) if label != IGNORE_INDEX]
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    assert all(label != IGNORE_INDEX for label in labels[first:]), "the supervised tokens form one block at the end"
    assert [label for label in labels if label != IGNORE_INDEX] == supervised, (
        "labels are the input ids where supervised"
    )
    return tokenizer.decode(input_ids[:first]), tokenizer.decode(supervised)


@pytest.mark.parametrize(
    "method, prefix",
    [
        ("it", "<bos><|user|>\nGive me three tips.\n<|assistant|>\n"),
        ("rt", "<bos><|assistant|>\n"),
    ],
)
def test_token_masks(tiny_model_dir, method, prefix):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    dataset, report = build_dataset([RECORD], tokenizer, method, 512, "test")
    example = dataset[0]
    unsupervised, supervised = _split(tokenizer, example["input_ids"], example["labels"])
    assert unsupervised == prefix
    assert supervised == "1. Sleep well.\n2. Drink water.<eos>\n"
    assert report.supervised_tokens == sum(label != IGNORE_INDEX for label in example["labels"])


def test_truncation_keeps_the_start_and_no_supervision_is_an_error(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    dataset, report = build_dataset([RECORD], tokenizer, "it", 20, "test")
    assert len(dataset[0]["input_ids"]) == 20 and report.truncated == 1 and report.lost_eos == 1
    with pytest.raises(RtuneError, match="no supervised tokens"):
        build_dataset([RECORD], tokenizer, "it", 8, "data.jsonl")  # the prompt alone fills 8 tokens


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _row(i, prompt="Q?", completion="A.", **meta):
    row = {"id": str(i), "prompt": prompt, "completion": completion, "source": "t"}
    return {**row, "meta": meta} if meta else row


def test_rt_accepts_response_only_records_it_refuses_them(tmp_path):
    path = _write(tmp_path / "responses.jsonl", [_row(1, prompt=""), _row(2, prompt="")])
    assert len(load_training_records(path, "rt").records) == 2
    with pytest.raises(RtuneError, match="use --method rt"):
        load_training_records(path, "it")


def test_empty_prompts_and_completions_are_skipped_and_counted(tmp_path):
    path = _write(tmp_path / "mixed.jsonl", [_row(1), _row(2, prompt=""), _row(3, completion=" ")])
    loaded = load_training_records(path, "it")
    assert [r.id for r in loaded.records] == ["1"]
    assert (loaded.skipped_empty_prompt, loaded.skipped_empty_completion) == (1, 1)


def test_method_and_data_disagreement_is_an_error(tmp_path):
    marked = _write(tmp_path / "marked.jsonl", [_row(1), _row(2, method="it")])
    with pytest.raises(RtuneError, match=r"marked.jsonl:2: .*meta.method='it'.*--method is 'rt'"):
        load_training_records(marked, "rt")
    rendered = _write(tmp_path / "rendered.jsonl", [_row(1, completion="<|assistant|>\nHi")])
    with pytest.raises(RtuneError, match="template marker"):
        load_training_records(rendered, "rt")


def test_collator_pads_right_and_masks_padding():
    batch = PaddingCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [-100]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_sampler_is_a_seeded_permutation_per_epoch_with_length_groups():
    lengths = [(i * 37) % 101 for i in range(64)]
    sampler = LengthGroupedShuffleSampler(lengths, batch_size=4, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(64)) and list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first
    batches = [first[i : i + 4] for i in range(0, 64, 4)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 15  # grouped: a random batch of 4 spans about 60
    assert list(LengthGroupedShuffleSampler(lengths, 4, seed=1)) != first
