"""The supervised-only LM head loss equals the ordinary full-logits loss, value and gradients."""

from __future__ import annotations

import pytest
import torch

from rtune.data.records import Record
from rtune.models import load_model
from rtune.templates import IGNORE_INDEX
from rtune.training import loss as loss_module
from rtune.training.data import PaddingCollator, build_dataset
from rtune.training.loss import capture_output, full_logits_cross_entropy_sum, supervised_cross_entropy_sum

RECORDS = [
    Record(
        id="a",
        prompt="Why is the sky blue?",
        completion="Sunlight scatters off air molecules, and blue light scatters most.",
        source="t",
    ),
    Record(id="b", prompt="What is 2 + 3?", completion="5", source="t"),
    Record(
        id="c", prompt="Give me three tips.", completion="1. Sleep well.\n2. Drink water.\n3. Walk daily.", source="t"
    ),
]


def _batch(tokenizer, method):
    dataset, _ = build_dataset(RECORDS, tokenizer, method, 512, "test")
    return PaddingCollator(tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])


def _losses(model, batch, softcap=None):
    """(supervised-head loss, full-logits loss) with their gradients w.r.t. every trainable weight."""
    results = []
    for supervised in (True, False):
        model.zero_grad()
        with capture_output(model.model) as seen:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if supervised:
            value = supervised_cross_entropy_sum(
                seen[-1].last_hidden_state, batch["labels"], model.lm_head.weight, softcap
            )
        else:
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            value = full_logits_cross_entropy_sum(logits, batch["labels"])
        value.backward()
        results.append((value.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    return results


def _assert_same_grads(ours: dict, reference: dict) -> None:
    """Every weight, LM head and embeddings included (as in full fine-tuning), up to float32 rounding."""
    for name, grad in reference.items():
        assert (ours[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


@pytest.mark.parametrize("method", ["it", "rt"])
def test_supervised_head_loss_and_grads_equal_full_logits(tiny_model_dir, method):
    model, tokenizer = load_model(str(tiny_model_dir))
    batch = _batch(tokenizer, method)
    (ours, our_grads), (full, full_grads) = _losses(model, batch)
    n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    assert torch.allclose(ours / n, full / n, rtol=0, atol=1e-6)
    _assert_same_grads(our_grads, full_grads)


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_chunking_and_softcapping_match(tiny_model_dir, monkeypatch, softcap):
    """Tiny chunks (several per batch), with or without Gemma-2 style logit soft-capping, give the same loss
    and gradients."""
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 7 * 400)  # 7 positions per chunk for a 400-token vocabulary
    model, tokenizer = load_model(str(tiny_model_dir))
    batch = _batch(tokenizer, "it")
    (ours, our_grads), (full, full_grads) = _losses(model, batch, softcap=softcap)
    assert torch.allclose(ours, full, rtol=1e-6, atol=1e-5)
    _assert_same_grads(our_grads, full_grads)


def test_no_supervised_positions_gives_a_differentiable_zero(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir))
    batch = _batch(tokenizer, "rt")
    labels = torch.full_like(batch["labels"], IGNORE_INDEX)
    with capture_output(model.model) as seen:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    value = supervised_cross_entropy_sum(seen[-1].last_hidden_state, labels, model.lm_head.weight)
    value.backward()
    assert value.item() == 0.0
