"""Rendering and supervision: the trained tokens are exactly `{completion}{eos}\\n`, for IT and RT."""

from __future__ import annotations

import pytest

from rtune.data.records import Record
from rtune.templates import (
    IGNORE_INDEX,
    TULU_CHAT_TEMPLATE,
    encode_records,
    inference_prompt,
    render,
    tokenize_rendered,
)


def supervised_ids(example):
    return [token for token, label in zip(example.input_ids, example.labels, strict=False) if label != IGNORE_INDEX]


def test_render_matches_the_papers_strings():
    it = render("Name a colour.", "Blue.", "it", "<eos>")
    rt = render("Name a colour.", "Blue.", "rt", "<eos>")
    assert it.text == "<|user|>\nName a colour.\n<|assistant|>\nBlue.<eos>\n"
    assert rt.text == "<|assistant|>\nBlue.<eos>\n"
    assert it.supervised_text() == rt.supervised_text() == "Blue.<eos>\n"
    assert inference_prompt("Name a colour.") == "<|user|>\nName a colour.\n<|assistant|>\n"


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        render("a", "b", "sft", "<eos>")


def test_it_text_equals_the_jinja_template_rendered_by_transformers(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = TULU_CHAT_TEMPLATE
    messages = [{"role": "user", "content": "Why?\nBecause."}, {"role": "assistant", "content": "  Indented\nanswer "}]
    via_jinja = tokenizer.apply_chat_template(messages, tokenize=False)
    assert via_jinja == render(messages[0]["content"], messages[1]["content"], "it", tokenizer.eos_token).text
    rt_jinja = tokenizer.apply_chat_template(messages[1:], tokenize=False)
    assert rt_jinja == render("", messages[1]["content"], "rt", tokenizer.eos_token).text
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == inference_prompt(messages[0]["content"])


@pytest.mark.parametrize("method", ["it", "rt"])
def test_labels_cover_exactly_the_completion_eos_and_newline(tiny_model_dir, method):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    example = tokenize_rendered(
        tokenizer, render("Give me three tips.", "1. Sleep well.\n2. Walk daily.", method, tokenizer.eos_token)
    )
    assert example.input_ids[0] == tokenizer.bos_token_id and example.labels[0] == IGNORE_INDEX
    assert tokenizer.decode(supervised_ids(example)) == "1. Sleep well.\n2. Walk daily.<eos>\n"
    first = example.labels.index(next(label for label in example.labels if label != IGNORE_INDEX))
    assert all(label == IGNORE_INDEX for label in example.labels[:first])
    assert all(label != IGNORE_INDEX for label in example.labels[first:])


def test_a_token_straddling_the_boundary_is_split_not_mislabelled(tiny_model_dir):
    """Completion text glued to the marker ("\\n1.") can merge into one token; the segments are tokenized apart."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = render("Prompt", "\n\n  spaced", "it", tokenizer.eos_token)
    example = tokenize_rendered(tokenizer, rendered)
    assert example.split_at_boundary
    assert tokenizer.decode(supervised_ids(example)) == "\n\n  spaced<eos>\n"


def test_truncation_reports_lost_eos_and_drops_unsupervised(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    records = [
        Record(id="long", prompt="Short.", completion="word " * 40, source="t"),
        Record(id="no-room", prompt="A very long prompt " * 20, completion="ok", source="t"),
        Record(id="fits", prompt="Hi", completion="Hello", source="t"),
    ]
    encoded = encode_records(records, tokenizer, "it", max_length=24)
    assert encoded.ids == ["long", "fits"]
    assert encoded.dropped_no_supervision == ["no-room"]
    assert encoded.truncated == 2 and encoded.lost_eos == 2  # the dropped one lost its EOS too
    long_example = encoded.examples[0]
    assert len(long_example.input_ids) == 24 and tokenizer.eos_token_id not in supervised_ids(long_example)


REAL_MODELS = ["gemma-3-270m", "smollm2-135m-instruct"]


@pytest.mark.slow
@pytest.mark.parametrize("model", REAL_MODELS)
def test_every_lima_record_supervises_exactly_its_completion(model, shared_data):
    """The issue's acceptance check, on all 1,000 LIMA records with both real tokenizers, IT and RT."""
    from rtune.data.sources import build_records
    from rtune.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    tokenizer.chat_template = TULU_CHAT_TEMPLATE
    records = build_records("lima", shared_data).records
    assert len(records) == 1000
    for method in ("it", "rt"):
        encoded = encode_records(records, tokenizer, method)
        assert len(encoded.examples) == 1000
        for record, example in zip(records, encoded.examples, strict=False):
            expected = record.completion + tokenizer.eos_token + "\n"
            assert tokenizer.decode(supervised_ids(example), clean_up_tokenization_spaces=False) == expected, record.id
    for record in records[:50]:
        messages = [{"role": "user", "content": record.prompt}, {"role": "assistant", "content": record.completion}]
        assert (
            tokenizer.apply_chat_template(messages, tokenize=False)
            == render(record.prompt, record.completion, "it", tokenizer.eos_token).text
        )
