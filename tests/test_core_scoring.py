"""Choice log-likelihoods: lm-eval's tokenisation, and the prefix-cached path equal to a plain forward per choice."""

from __future__ import annotations

import pytest

from rtune.evals.choice_scorer import ChoiceScorer, ScoreRequest, encode_requests, score_recompute, split_head
from rtune.models import load_model

REQUESTS = [
    ScoreRequest("Question: What is 2 + 3?\nAnswer:", (" 5", " 6 apples", " the quick brown fox jumps")),
    ScoreRequest("The quick brown fox", (" jumps over the lazy dog.", " sleeps")),
    ScoreRequest(
        "Paris is the capital of France. Berlin is the capital of Germany. Paris is the capital of",
        (" France.", " Germany. Berlin is", " x"),
    ),
    # the trailing space moves to the choices
    ScoreRequest("Explain why the sky is blue: ", ("sunlight scatters", "it is")),
    ScoreRequest("", ("Hello there", "Sorry")),  # empty context: scored after BOS, as lm-eval
    ScoreRequest("<|user|>\nGive me three tips.\n<|assistant|>\n", ("1. Sleep well.", "No.")),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


def plain_logprobs(model, context_ids, continuation_ids) -> tuple[float, bool]:
    """The obvious computation: one unbatched forward of context + continuation, log-softmax, sum.

    Only the logits from the last context position on are kept (row k predicts continuation token k).
    """
    import torch

    ids = torch.tensor([list(context_ids) + list(continuation_ids)])
    with torch.no_grad():
        logprobs = model(input_ids=ids, logits_to_keep=len(continuation_ids) + 1).logits[0].log_softmax(-1)
    picked = [logprobs[k, token].item() for k, token in enumerate(continuation_ids)]
    greedy = all(logprobs[k].argmax().item() == token for k, token in enumerate(continuation_ids))
    return sum(picked), greedy


def test_encoding_follows_lm_eval(tiny):
    _, tokenizer = tiny
    encoded = encode_requests(tokenizer, REQUESTS)
    bos = tokenizer.bos_token_id
    for request, enc in zip(REQUESTS, encoded, strict=True):
        context = request.context.rstrip()
        assert enc.context[0] == bos and enc.context.count(bos) == 1
        for continuation, ids in zip(request.continuations, enc.continuations, strict=True):
            if context:
                whole = tokenizer(request.context + continuation)["input_ids"]
                assert list(enc.context) == tokenizer(context)["input_ids"]
                assert list(enc.context) + list(ids) == list(enc.context) + whole[len(enc.context) :]
            else:
                assert list(enc.context) == [bos]
                assert list(ids) == tokenizer(continuation, add_special_tokens=False)["input_ids"]
    # "…blue: " keeps its space with the choice, not the context
    assert tokenizer.decode(encoded[3].continuations[0]).startswith(" ")


def test_a_long_context_is_cut_on_the_left_as_lm_eval_cuts_it(tiny):
    """Context + choice but its last token (never an input) fill the window exactly (lm-eval: max_length + 1)."""
    _, tokenizer = tiny
    request = ScoreRequest("Paris is the capital of France. " * 20, ("Berlin", "Rome"))
    [full] = encode_requests(tokenizer, [request])
    [cut] = encode_requests(tokenizer, [request], max_length=40)
    longest = max(len(c) for c in cut.continuations)
    assert len(cut.context) + longest - 1 == 40 and cut.context == full.context[-len(cut.context) :]
    assert cut.continuations == full.continuations


def test_chat_rendered_context_keeps_one_bos(tiny):
    _, tokenizer = tiny
    encoded = encode_requests(tokenizer, [ScoreRequest(tokenizer.bos_token + "Question: hi\nAnswer:", (" yes",))])
    assert encoded[0].context.count(tokenizer.bos_token_id) == 1


@pytest.mark.parametrize(
    "batch_size, max_logit_positions, logits_where_scored",
    [(1, 1024, True), (8, 1024, True), (8, 6, True), (8, 1024, False)],
)
def test_prefix_cache_equals_plain_forward_per_choice(tiny, batch_size, max_logit_positions, logits_where_scored):
    model, tokenizer = tiny
    scorer = ChoiceScorer(model, tokenizer, batch_size=batch_size, max_logit_positions=max_logit_positions)
    assert scorer.split is not None
    if not logits_where_scored:
        scorer.split = None  # the full forward pass with logits at every continuation position
    cached = scorer.score(REQUESTS)
    for enc, scores in zip(encode_requests(tokenizer, REQUESTS), cached, strict=True):
        assert len(scores) == len(enc.continuations)
        for ids, score in zip(enc.continuations, scores, strict=True):
            expected, greedy = plain_logprobs(model, enc.context, ids)
            assert score.logprob == pytest.approx(expected, abs=1e-4)
            assert score.is_greedy == greedy and score.n_tokens == len(ids)


def test_recompute_baseline_gives_the_same_numbers(tiny):
    model, tokenizer = tiny
    cached = ChoiceScorer(model, tokenizer).score(REQUESTS)
    plain = score_recompute(model, tokenizer, REQUESTS, batch_size=3)
    for a, b in zip(cached, plain, strict=True):
        assert [s.logprob for s in a] == pytest.approx([s.logprob for s in b], abs=1e-4)
        assert [s.is_greedy for s in a] == [s.is_greedy for s in b]


@pytest.mark.parametrize("logits_where_scored", [True, False])
def test_float64_scores_keep_float64_precision(tiny_model_dir, logits_where_scored):
    """In float64 the cached path, with or without the split head, equals a plain forward to 1e-9:
    a float32 step anywhere (the log-softmax, the per-row sums) would leave differences near 1e-6."""
    import torch

    model, tokenizer = load_model(str(tiny_model_dir), dtype=torch.float64)
    scorer = ChoiceScorer(model, tokenizer, batch_size=4)
    if not logits_where_scored:
        scorer.split = None
    for enc, scores in zip(encode_requests(tokenizer, REQUESTS), scorer.score(REQUESTS), strict=True):
        for ids, score in zip(enc.continuations, scores, strict=True):
            assert score.logprob == pytest.approx(plain_logprobs(model, enc.context, ids)[0], abs=1e-9)


def test_split_head_refuses_a_model_whose_logits_it_cannot_reproduce(tiny, monkeypatch):
    model, _ = tiny
    # Llama ignores it; the probe must notice
    monkeypatch.setattr(model.config, "final_logit_softcapping", 0.5, raising=False)
    assert split_head(model) is None


def test_greedy_flag_on_a_continuation_the_model_predicts(tiny):
    model, tokenizer = tiny
    import torch

    context = "The quick brown fox"
    ids = tokenizer(context, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    predicted = tokenizer.decode(out[0, ids.shape[1] :])
    [[score]] = ChoiceScorer(model, tokenizer).score([ScoreRequest(context, (predicted,))])
    assert score.is_greedy


@pytest.mark.slow
def test_gemma_prefix_cache_matches_past_its_sliding_window():
    """Gemma 3 mixes 512-token sliding-window layers with global ones; a 600-token context crosses the window."""
    model, tokenizer = load_model("gemma-3-270m")
    long_context = "Paris is the capital of France. " * 85 + "Berlin is the capital of"
    requests = [
        ScoreRequest(long_context, (" Germany.", " France, as everyone knows")),
        ScoreRequest("Question: What is 2 + 3?\nAnswer:", (" 5", " five apples")),
    ]
    assert len(tokenizer(long_context)["input_ids"]) > 560
    cached = ChoiceScorer(model, tokenizer, batch_size=2).score(requests)
    for enc, scores in zip(encode_requests(tokenizer, requests), cached, strict=True):
        for ids, score in zip(enc.continuations, scores, strict=True):
            expected, _ = plain_logprobs(model, enc.context, ids)
            assert score.logprob == pytest.approx(expected, rel=2e-5)  # float32, another attention layout
