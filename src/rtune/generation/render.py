"""Turning a request into model input, and model output into result text, the same way for every local backend."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rtune.errors import RtuneError
from rtune.generation.base import GenerationRequest


def render_text(tokenizer, request: GenerationRequest) -> str:
    """The raw prompt as is, or the messages through the model's chat template (`rtune.prompting.chat_text`)."""
    from rtune.prompting import chat_text

    return request.prompt if request.prompt is not None else chat_text(tokenizer, request.messages)


def encode_request(tokenizer, request: GenerationRequest) -> list[int]:
    """Token ids with BOS exactly once: added by the tokenizer unless the template already wrote it.

    A request that sets `add_special_tokens` gets exactly that, whatever its text starts with.
    """
    text = render_text(tokenizer, request)
    if request.add_special_tokens is not None:
        return list(tokenizer(text, add_special_tokens=request.add_special_tokens)["input_ids"])
    has_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    return list(tokenizer(text, add_special_tokens=not has_bos)["input_ids"])


def check_prompt_lengths(model: str, requests: list[GenerationRequest], names: list[str]) -> None:
    """Refuse, before the model is loaded, a prompt longer than the model's context: sent whole, a huge item
    would fail deep inside the model, after minutes and gigabytes. Only prompts with as many bytes as the
    context has tokens are tokenized (a token is at least one byte), and only as far as it takes to tell."""
    from rtune.models import context_length, load_tokenizer

    limit = context_length(model)
    if limit is None:
        return
    tokenizer = load_tokenizer(model)

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # and BOS

    for request, name in zip(requests, names, strict=True):
        text = render_text(tokenizer, request)
        if len(text.encode("utf-8")) + 2 < limit:
            continue
        size = 4 * limit
        while size < len(text) and tokens(text[:size]) < limit:  # a prefix that is too long already settles it
            size *= 4
        if tokens(text[:size]) >= limit:
            raise RtuneError(
                f"{name}: the prompt ({len(text):,} characters) is longer than the {limit:,} tokens "
                f"{model} reads; shorten it or leave it out"
            )


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; the flag says whether one was found."""
    cuts = [position for position in (text.find(s) for s in stop if s) if position >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def stream_until_stop(pieces: Iterable[str], stop: tuple[str, ...]) -> Iterator[str]:
    """Pass streamed text on, ending where a stop string begins (one may arrive split over pieces)."""
    shown = ""
    for piece in pieces:
        text, stopped = truncate_at_stop(shown + piece, stop)
        if len(text) > len(shown):
            yield text[len(shown) :]
        shown = text
        if stopped:
            return
