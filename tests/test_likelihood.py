"""The judge-free likelihood metric: hand-checkable summaries, exact scores on the tiny model, the CLI."""

from __future__ import annotations

import json
import sys

import pytest

from rtune.data.records import Record
from rtune.evals.instructability import (
    Candidate,
    LikelihoodSettings,
    choose_distractors,
    evaluate_likelihood,
    summarise,
    truncate_responses,
)

RECORDS = [
    Record(
        id="a", prompt="Write a short poem about the sea.", completion="The sea is wide and deep and blue.", source="t"
    ),
    Record(
        id="b",
        prompt="Why is the sky blue?",
        completion="Sunlight scatters off air molecules, and blue light scatters most.",
        source="t",
    ),
    Record(id="c", prompt="What is 2 + 3?", completion="5", source="t"),
]


def test_summary_by_hand():
    # log p(r_j | x_i): rows are instructions, columns responses. Item a prefers its own response
    # (-10 vs -12, -11); item b prefers c's (-4 > -20); item c prefers its own (-1 vs -30, -25).
    matrix = {
        (0, 0): -10.0,
        (0, 1): -12.0,
        (0, 2): -11.0,
        (1, 0): -15.0,
        (1, 1): -20.0,
        (1, 2): -4.0,
        (2, 0): -30.0,
        (2, 1): -25.0,
        (2, 2): -1.0,
    }
    unconditional = [-14.0, -30.0, -3.0]  # log p(r_j | empty instruction)
    candidates = [Candidate("a", "", 10), Candidate("b", "", 20), Candidate("c", "", 1)]
    result = summarise(
        "m",
        "f",
        RECORDS,
        candidates,
        [[1, 2], [0, 2], [0, 1]],
        matrix,
        unconditional,
        LikelihoodSettings(headline="total", bootstrap_samples=200),
    )
    total = result.variants["total"]
    assert [item.correct["total"] for item in result.items] == [True, False, True]
    assert [item.margin["total"] for item in result.items] == [1.0, -16.0, 24.0]  # own minus best other
    assert total.accuracy.value == pytest.approx(2 / 3) and total.margin.value == pytest.approx(3.0)
    assert total.accuracy.ci_low <= 2 / 3 <= total.accuracy.ci_high
    # per token: a: -1.0 vs b -0.6, c -11 -> wrong; b: -1.0 vs a -1.5, c -4 -> right; c: -1 vs -3, -1.25 -> right
    assert [item.margin["per_token"] for item in result.items] == pytest.approx([-0.4, 0.5, 0.25])
    # pmi: a: -10+14=4 vs b 18, c -8 -> wrong; b: -20+30=10 vs a -1, c -1 -> right; c: -1+3=2 vs a -16, b 5 -> wrong
    assert [item.margin["pmi"] for item in result.items] == [-14.0, 11.0, -3.0]
    assert result.accuracy == pytest.approx(2 / 3) and result.chance_accuracy == pytest.approx(1 / 3)


def test_distractors_are_seeded_and_exclude_the_item():
    chosen = choose_distractors(10, 3, seed=0)
    assert chosen == choose_distractors(10, 3, seed=0) != choose_distractors(10, 3, seed=1)
    assert all(len(others) == 3 and i not in others for i, others in enumerate(chosen))
    assert choose_distractors(3, None, 0) == [[1, 2], [0, 2], [0, 1]]


def _direct_logprob(model, tokenizer, prompt: str, response: str) -> float:
    """log p(response | prompt) the plain way, with lm-eval's rule: the prompt's trailing newline goes with
    the response."""
    import torch

    context = prompt.rstrip()
    context_ids = tokenizer(context)["input_ids"]
    whole = tokenizer(context + prompt[len(context) :] + response)["input_ids"]
    with torch.no_grad():
        logprobs = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    return sum(float(logprobs[p - 1, whole[p]]) for p in range(len(context_ids), len(whole)))


def test_scores_match_a_plain_forward_pass(tiny_model_dir):
    from rtune.models import load_model
    from rtune.templates import inference_prompt

    result = evaluate_likelihood(
        str(tiny_model_dir), RECORDS, LikelihoodSettings(max_response_tokens=None, bootstrap_samples=100)
    )
    model, tokenizer = load_model(str(tiny_model_dir))
    item = result.items[1]
    assert item.reference == pytest.approx(
        _direct_logprob(model, tokenizer, inference_prompt(RECORDS[1].prompt), RECORDS[1].completion), abs=1e-4
    )
    assert item.distractors["c"] == pytest.approx(
        _direct_logprob(model, tokenizer, inference_prompt(RECORDS[1].prompt), "5"), abs=1e-4
    )
    assert item.reference_unconditional == pytest.approx(
        _direct_logprob(model, tokenizer, inference_prompt(""), RECORDS[1].completion), abs=1e-4
    )
    assert result.n_distractors == 2 and set(result.variants) == {"total", "per_token", "pmi"}


def test_truncation_cuts_at_token_boundaries(tiny_model_dir):
    from rtune.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    cut = truncate_responses(tokenizer, RECORDS, 3)
    assert [c.n_tokens for c in cut] == [3, 3, 1]
    assert RECORDS[0].completion.startswith(cut[0].text) and len(cut[0].text) < len(RECORDS[0].completion)
    assert (
        tokenizer(cut[0].text, add_special_tokens=False)["input_ids"]
        == tokenizer(RECORDS[0].completion, add_special_tokens=False)["input_ids"][:3]
    )


def test_cli_writes_json_and_rejects_too_few_records(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from rtune.cli import main

    records = tmp_path / "r.jsonl"
    records.write_text("".join(r.model_dump_json() + "\n" for r in RECORDS))
    out = tmp_path / "lik.json"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "rtune",
            "eval",
            "likelihood",
            "--model",
            str(tiny_model_dir),
            "--records",
            str(records),
            "--out",
            str(out),
            "--distractors",
            "1",
            "--max-response-tokens",
            "4",
        ],
    )
    main()
    saved = json.loads(out.read_text())
    assert saved["n_items"] == 3 and saved["n_distractors"] == 1 and saved["chance_accuracy"] == 0.5
    assert "pmi" in capsys.readouterr().err
    records.write_text(RECORDS[0].model_dump_json() + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "at least 2 records" in capsys.readouterr().err
