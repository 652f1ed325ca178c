"""Log-likelihood of answer choices given a context, tokenised as lm-eval does, each context computed once.

lm-eval's HF backend runs `context + choice` through the model once per choice and keeps logits
for every position. Here each context runs once (`use_cache=True`, logits of its last position
only), its key/value cache is repeated for the choices, and only the choice tokens run again, in
one batch, with logits computed only at the positions that are scored. Same inputs, same
positions, same numbers (tests pin this against a plain forward per choice); `score_recompute`
is the plain per-choice path, kept as the reference and the baseline of
benchmarks/core_throughput.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rtune.errors import RtuneError


@dataclass(frozen=True)
class ScoreRequest:
    """One context and its candidate continuations (target delimiter already included)."""

    context: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class ChoiceScore:
    logprob: float  # sum of the continuation tokens' log-probabilities
    is_greedy: bool  # every continuation token is the argmax at its position
    n_tokens: int


@dataclass(frozen=True)
class EncodedRequest:
    context: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]


def _encode_texts(tokenizer, texts: list[str], add_special_tokens: bool | None = None) -> list[list[int]]:
    """Token ids. None: the tokenizer's own special tokens (BOS), except for texts already starting with BOS (a
    chat template writes it itself), as lm-eval encodes today. A bool is passed to the tokenizer for every text, as
    lm-eval <= 0.4.5 did (`rtune eval core --protocol paper`).
    """
    if not texts:
        return []
    if add_special_tokens is not None:
        return [list(row) for row in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]
    bos = tokenizer.bos_token
    starts_with_bos = [bool(bos) and text.startswith(bos) for text in texts]
    ids: list[list[int]] = [[] for _ in texts]
    for flag in (False, True):
        picked = [i for i, value in enumerate(starts_with_bos) if value == flag]
        if picked:
            encoded = tokenizer([texts[i] for i in picked], add_special_tokens=not flag)["input_ids"]
            for i, row in zip(picked, encoded, strict=True):
                ids[i] = list(row)
    return ids


def encode_requests(
    tokenizer, requests: Sequence[ScoreRequest], max_length: int | None = None, add_special_tokens: bool | None = None
) -> list[EncodedRequest]:
    """lm-eval's `_encode_pair` for every choice (`add_special_tokens` as in `_encode_texts`).

    Trailing whitespace of the context moves to the front of each continuation; the continuation's
    tokens are those of encode(context + continuation) after encode(context)'s length. An empty
    context becomes the BOS (else EOS) token. With `max_length`, the context loses tokens on the
    left until the longest continuation fits: context + continuation but its last token (never an
    input) make at most `max_length` tokens, as lm-eval truncates. lm-eval cuts per choice; the two
    agree where the choices are equally long (MMLU's letters).
    """
    contexts, tails = [], []  # tails: each continuation with the context's trailing whitespace in front
    for request in requests:
        moved = request.context[len(request.context.rstrip()) :]
        contexts.append(request.context[: len(request.context) - len(moved)])
        tails.append([moved + continuation for continuation in request.continuations])
    context_ids = _encode_texts(tokenizer, contexts, add_special_tokens)
    whole_texts = [context + tail for context, row in zip(contexts, tails, strict=True) for tail in row]
    whole_ids = iter(_encode_texts(tokenizer, whole_texts, add_special_tokens))
    prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = []
    for request, context, ctx_ids, row in zip(requests, contexts, context_ids, tails, strict=True):
        wholes = [next(whole_ids) for _ in row]
        if context:
            continuations = tuple(tuple(whole[len(ctx_ids) :]) for whole in wholes)
        else:
            ctx_ids, continuations = [prefix_id], tuple(map(tuple, _encode_texts(tokenizer, row, False)))
        if any(len(c) == 0 for c in continuations):
            raise RtuneError(
                f"a choice encodes to no tokens after its context (context ends {request.context[-40:]!r})"
            )
        if max_length is not None:
            room = max_length + 1 - max(len(c) for c in continuations)  # a choice's last token is never input
            if room < 1:
                raise RtuneError(f"a choice is longer than the model's {max_length}-token window")
            ctx_ids = ctx_ids[-room:]
        encoded.append(EncodedRequest(tuple(ctx_ids), continuations))
    return encoded


def _at_least_fp32(logits):
    """16-bit logits in float32 for the log-softmax; float64 ones (reference checks) stay float64."""
    import torch

    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _gather_scores(logits, targets, mask, rows=None, n_rows: int | None = None) -> tuple[list[float], list[bool]]:
    """Per row: sum over masked positions of log p(target), and whether every target was the argmax.

    `logits` is (rows, positions, vocab), or flat (positions, vocab) with `rows` naming each position's row.
    """
    import torch

    logits = _at_least_fp32(logits)
    token_logprob = (logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)) * mask
    missed = ((logits.argmax(dim=-1) != targets) & mask).float()
    if rows is None:
        return token_logprob.sum(-1).tolist(), (missed.sum(-1) == 0).tolist()
    sums = torch.zeros(n_rows, device=logits.device, dtype=token_logprob.dtype).index_add_(0, rows, token_logprob)
    misses = torch.zeros(n_rows, device=logits.device, dtype=missed.dtype).index_add_(0, rows, missed)
    return sums.tolist(), (misses == 0).tolist()


def _cache_of(output) -> dict:
    """The returned key/value cache as the keyword the model takes it back under (`cache` since transformers 5.24)."""
    if "cache" in getattr(output, "__dataclass_fields__", {}):
        return {"cache": output.cache}
    return {"past_key_values": output.past_key_values}


@dataclass(frozen=True)
class _SplitHead:
    """The model as decoder + output layer, so logits are computed only where a token is scored."""

    decoder: object
    head: object
    softcap: float | None

    def logits(self, hidden):
        import torch

        logits = self.head(hidden)
        return logits if self.softcap is None else torch.tanh(logits / self.softcap) * self.softcap


def split_head(model) -> _SplitHead | None:
    """Decoder and head of a causal LM, if running them apart reproduces its logits on a probe; else None.

    Padded continuation positions then cost no vocabulary-wide logit row. Models that transform
    logits some other way (a scale, a bias) fail the probe and keep the plain forward pass.
    """
    import torch

    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or decoder is model:
        return None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    split = _SplitHead(decoder, head, getattr(config, "final_logit_softcapping", None))
    probe = torch.arange(1, 6, device=model.device).unsqueeze(0) % max(1, config.vocab_size)
    with torch.inference_mode():
        expected = model(input_ids=probe).logits.float()
        got = split.logits(decoder(input_ids=probe).last_hidden_state).float()
    return split if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4) else None


class ChoiceScorer:
    """Scores batches of `ScoreRequest`s with the context computed once per request.

    `batch_size` caps contexts per forward pass; `max_tokens` caps padded context tokens per pass;
    `max_logit_positions` caps continuation positions per pass (each holds a vocabulary-sized row of
    logits, 1 MiB for Gemma's 262k vocabulary); `add_special_tokens` is `encode_requests`'.
    """

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 8,
        max_tokens: int = 4096,
        max_logit_positions: int = 512,
        add_special_tokens: bool | None = None,
    ):
        self.model, self.tokenizer, self.add_special_tokens = model, tokenizer, add_special_tokens
        self.batch_size, self.max_tokens, self.max_logit_positions = batch_size, max_tokens, max_logit_positions
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self.split = split_head(model)

    def score(
        self, requests: Sequence[ScoreRequest], progress: Callable[[int], None] | None = None
    ) -> list[list[ChoiceScore]]:
        encoded = encode_requests(self.tokenizer, requests, self.max_length, self.add_special_tokens)
        results: list[list[ChoiceScore] | None] = [None] * len(encoded)
        # Longest continuations first, then longest contexts: a padded continuation position is paid once per
        # choice (and, without a split head, with a vocabulary-wide logit row), a padded context position once.
        order = sorted(
            range(len(encoded)), key=lambda i: (-max(map(len, encoded[i].continuations)), -len(encoded[i].context))
        )
        for batch in self._batches(order, encoded):
            for index, scores in zip(batch, self._score_batch([encoded[i] for i in batch]), strict=True):
                results[index] = scores
            if progress:
                progress(len(batch))
        return results  # type: ignore[return-value]

    def _batches(self, order: list[int], encoded: list[EncodedRequest]):
        batch: list[int] = []
        width = positions = rows = 0
        for index in order:
            request = encoded[index]
            tails = [len(c) - 1 for c in request.continuations if len(c) > 1]
            new_width = max(width, len(request.context))
            new_rows, new_tail = rows + len(tails), max([positions, *tails])
            fits = (
                len(batch) < self.batch_size
                and (len(batch) + 1) * new_width <= self.max_tokens
                and new_rows * new_tail <= self.max_logit_positions
            )
            if batch and not fits:
                yield batch
                batch, width, rows, positions = [], 0, 0, 0
                new_width, new_rows, new_tail = len(request.context), len(tails), max([0, *tails])
            batch.append(index)
            width, rows, positions = new_width, new_rows, new_tail
        if batch:
            yield batch

    def _score_batch(self, batch: list[EncodedRequest]) -> list[list[ChoiceScore]]:
        import torch

        device = self.model.device
        width = max(len(r.context) for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):  # left padding: every context ends at the same column
            ids[row, width - len(request.context) :] = torch.tensor(request.context)
            mask[row, width - len(request.context) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        tails = [(row, c) for row, request in enumerate(batch) for c in request.continuations if len(c) > 1]
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=bool(tails), logits_to_keep=1
            )
            last = _at_least_fp32(out.logits[:, -1, :])
            first_logprob = last.log_softmax(-1)
            first_greedy = last.argmax(-1)
            tail_scores = self._score_tails(_cache_of(out), mask, tails) if tails else {}
        results = []
        for row, request in enumerate(batch):
            scores = []
            for c in request.continuations:
                logprob = float(first_logprob[row, c[0]])
                greedy = bool(first_greedy[row] == c[0])
                if len(c) > 1:
                    tail_logprob, tail_greedy = tail_scores[(row, c)]
                    logprob, greedy = logprob + tail_logprob, greedy and tail_greedy
                scores.append(ChoiceScore(logprob, greedy, len(c)))
            results.append(scores)
        return results

    def _score_tails(self, cache: dict, context_mask, tails: list[tuple[int, tuple[int, ...]]]) -> dict:
        """Run every continuation but its last token on top of its context's cache, all in one batch."""
        import torch

        device = context_mask.device
        rows = torch.tensor([row for row, _ in tails], device=device)
        span = max(len(c) - 1 for _, c in tails)
        inputs = torch.full((len(tails), span), self.pad_id, dtype=torch.long)
        targets = torch.zeros((len(tails), span), dtype=torch.long)
        valid = torch.zeros((len(tails), span), dtype=torch.bool)
        for i, (_, c) in enumerate(tails):
            inputs[i, : len(c) - 1] = torch.tensor(c[:-1])
            targets[i, : len(c) - 1] = torch.tensor(c[1:])
            valid[i, : len(c) - 1] = True
        inputs, targets, valid = inputs.to(device), targets.to(device), valid.to(device)
        next(iter(cache.values())).batch_select_indices(rows)  # repeat each context's keys/values once per continuation
        attention = torch.cat([context_mask[rows], valid.long()], dim=1)
        positions = context_mask.sum(-1)[rows].unsqueeze(1) + torch.arange(span, device=device)
        arguments = dict(input_ids=inputs, attention_mask=attention, position_ids=positions, use_cache=True, **cache)
        if self.split is None:
            sums, greedy = _gather_scores(self.model(**arguments).logits, targets, valid)
        else:  # logits only at the scored positions, none for padding
            hidden = self.split.decoder(**arguments).last_hidden_state
            rows_of = torch.arange(len(tails), device=device).unsqueeze(1).expand_as(valid)[valid]
            sums, greedy = _gather_scores(
                self.split.logits(hidden[valid]), targets[valid], valid[valid], rows=rows_of, n_rows=len(tails)
            )
        return {(row, c): (s, g) for (row, c), s, g in zip(tails, sums, greedy, strict=True)}


def score_recompute(
    model,
    tokenizer,
    requests: Sequence[ScoreRequest],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
    add_special_tokens: bool | None = None,
) -> list[list[ChoiceScore]]:
    """The plain way, as lm-eval's HF backend: one full forward of context + choice per choice, logits everywhere."""
    import torch

    encoded = encode_requests(
        tokenizer, requests, getattr(model.config, "max_position_embeddings", None), add_special_tokens
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pairs = [(i, j, r.context, c) for i, r in enumerate(encoded) for j, c in enumerate(r.continuations)]
    pairs.sort(key=lambda p: -(len(p[2]) + len(p[3])))
    results: list[list[ChoiceScore | None]] = [[None] * len(r.continuations) for r in encoded]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        width = max(len(ctx) + len(cont) for _, _, ctx, cont in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        targets = torch.zeros((len(chunk), width - 1), dtype=torch.long)
        valid = torch.zeros((len(chunk), width - 1), dtype=torch.bool)
        for row, (_, _, ctx, cont) in enumerate(chunk):  # right padding, as lm-eval
            sequence = list(ctx) + list(cont)
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
            targets[row, len(ctx) - 1 : len(sequence) - 1] = torch.tensor(cont)
            valid[row, len(ctx) - 1 : len(sequence) - 1] = True
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[:, :-1]
            sums, greedy = _gather_scores(logits, targets.to(model.device), valid.to(model.device))
        for (i, j, _, cont), s, g in zip(chunk, sums, greedy, strict=True):
            results[i][j] = ChoiceScore(s, g, len(cont))
        if progress:
            progress(len(chunk))
    return results  # type: ignore[return-value]
