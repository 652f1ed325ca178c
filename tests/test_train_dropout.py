"""The geometric-gap LoRA dropout has nn.Dropout's law and replaces PEFT's low-rate dropouts only."""

from __future__ import annotations

import math

import pytest
import torch

from rtune.training.dropout import GeometricDropout, dropped_positions, speed_up_lora_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.2])
def test_each_element_is_dropped_independently_with_probability_p(p):
    torch.manual_seed(0)
    n, trials = 1000, 400
    counts = torch.zeros(n)
    sizes = []
    for _ in range(trials):
        positions = dropped_positions(n, p, torch.device("cpu"))
        assert torch.all(positions[1:] > positions[:-1]) and (
            len(positions) == 0 or (0 <= positions[0] and positions[-1] < n)
        )
        counts[positions] += 1
        sizes.append(len(positions))
    # every position is dropped at rate p (binomial counts; 5 sigma bounds over 1,000 positions)
    sigma = math.sqrt(trials * p * (1 - p))
    assert (counts - trials * p).abs().max() < 5 * sigma
    # the number dropped per draw is Binomial(n, p): mean and variance both match
    sizes = torch.tensor(sizes, dtype=torch.float64)
    assert abs(sizes.mean() - n * p) < 5 * math.sqrt(n * p * (1 - p) / trials)
    assert 0.7 < sizes.var() / (n * p * (1 - p)) < 1.3


def test_neighbouring_elements_are_independent():
    torch.manual_seed(1)
    n, p = 200_000, 0.1
    mask = torch.zeros(n, dtype=torch.bool)
    mask[dropped_positions(n, p, torch.device("cpu"))] = True
    pairs = (mask[1:] & mask[:-1]).double().mean().item()
    assert abs(pairs - p * p) < 5 * math.sqrt(p * p / n)


def test_scaling_gradients_and_eval_mode():
    torch.manual_seed(0)
    dropout = GeometricDropout(0.1)
    x = torch.randn(64, 300, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.9)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.9)
    dropout.eval()
    assert dropout(x) is x


def test_only_low_rate_lora_dropouts_are_swapped(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for rate, expected in ((0.05, GeometricDropout), (0.5, torch.nn.Dropout), (0.0, torch.nn.Identity)):
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            LoraConfig(r=4, lora_dropout=rate, target_modules="all-linear"),
        )
        swapped = speed_up_lora_dropout(model)
        dropouts = [
            d
            for m in model.modules()
            if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
            for d in m.lora_dropout.values()
        ]
        assert dropouts and all(type(d) is expected for d in dropouts)
        assert swapped == (len(dropouts) if expected is GeometricDropout else 0)
