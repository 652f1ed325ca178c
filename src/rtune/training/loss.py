"""Next-token cross-entropy computed only at supervised positions, without full-vocabulary logits.

For a model with a large vocabulary (Gemma: 262k tokens) the LM head and the softmax over it are
the most expensive part of a training step, and most of it is wasted: positions whose next token
is not supervised (prompt, template markers, padding) never reach the loss. Here the model body
runs as usual, its last hidden states are captured by a forward hook, and the LM head is applied
to the supervised positions only, in chunks, with the gradient computed during the forward pass
(so neither the logits nor their softmax are ever held for the whole batch). The result equals
the standard loss (`tests/test_train_loss.py` checks loss and gradients against full logits).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from rtune.templates import IGNORE_INDEX

CHUNK_ELEMENTS = 1 << 26  # logits per chunk (256 MB in fp32)


class _SupervisedCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies of `hidden @ weight.T` against `targets`; gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap, compute_dtype):
        n, vocab = hidden.shape[0], weight.shape[0]
        chunk = max(1, CHUNK_ELEMENTS // vocab)
        need_hidden_grad, need_weight_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        weight_c = weight.to(compute_dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight_grad else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk):
                h = hidden[start : start + chunk].to(compute_dtype)
                t = targets[start : start + chunk]
                logits = (h @ weight_c.T).float()
                if softcap:
                    squashed = torch.tanh(logits / softcap)
                    logits = squashed * softcap
                target_logits = logits.gather(1, t[:, None]).squeeze(1)
                top = logits.amax(dim=-1, keepdim=True)
                unnormalised = logits.sub_(top).exp_()  # exp(logit - max), in the logits buffer: one exp pass
                row_sums = unnormalised.sum(dim=-1, keepdim=True)
                total += (row_sums.log() + top - target_logits[:, None]).sum()
                if not (need_hidden_grad or need_weight_grad):
                    continue
                if softcap:  # the chain rule through tanh is elementwise: materialise the gradient
                    grad_logits = unnormalised.div_(row_sums)
                    grad_logits[torch.arange(len(t), device=t.device), t] -= 1
                    grad_logits *= 1 - squashed * squashed
                    grad_logits = grad_logits.to(compute_dtype)
                    if need_hidden_grad:
                        grad_hidden[start : start + chunk] = grad_logits @ weight_c
                    if need_weight_grad:
                        grad_weight += (grad_logits.T @ h).float()
                    continue
                # softmax - onehot, without touching the (rows x vocab) matrix again: the division by the
                # row sums moves onto the small side of each product, the onehot becomes a row lookup.
                scale = row_sums.reciprocal()
                unnormalised = unnormalised.to(compute_dtype)
                if need_hidden_grad:
                    grad_hidden[start : start + chunk] = (
                        (unnormalised @ weight_c).float() * scale - weight_c[t].float()
                    ).to(hidden.dtype)
                if need_weight_grad:
                    grad_weight += (unnormalised.T @ (h.float() * scale).to(compute_dtype)).float()
                    grad_weight.index_add_(0, t, -h.float())
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            None if grad_hidden is None else grad_hidden * grad_output.to(grad_hidden.dtype),
            None if grad_weight is None else (grad_weight * grad_output).to(ctx.weight_dtype),
            None,
            None,
            None,
        )


def supervised_cross_entropy_sum(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    softcap: float | None = None,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Summed loss of predicting `labels[:, t+1]` from `hidden[:, t]`, over supervised positions only.

    `hidden` is (batch, seq, dim) after the final norm, `labels` (batch, seq) with IGNORE_INDEX
    where there is no loss, `weight` the LM head (vocab, dim).
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    picked = hidden[:, :-1][keep]
    if compute_dtype is None:
        compute_dtype = (
            torch.get_autocast_dtype(hidden.device.type)
            if torch.is_autocast_enabled(hidden.device.type)
            else weight.dtype
        )
    return _SupervisedCrossEntropy.apply(picked, weight, targets[keep], softcap, compute_dtype)


def full_logits_cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same summed loss from ordinary logits (the fallback path and the reference in tests)."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


@contextmanager
def capture_output(module: torch.nn.Module):
    """Record the output of `module` during the calls made inside the block (a list, last call last)."""
    seen: list = []
    handle = module.register_forward_hook(lambda _module, _args, output: seen.append(output))
    try:
        yield seen
    finally:
        handle.remove()
