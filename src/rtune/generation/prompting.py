"""Turning a request into model input, and model output into result text, the same way for every local backend."""

from __future__ import annotations

from typing import Iterable, Iterator

from rtune.generation.base import GenerationRequest
from rtune.templates import TULU_CHAT_TEMPLATE


def render_text(tokenizer, request: GenerationRequest) -> str:
    """The raw prompt as is, or the messages through the model's chat template (Tulu when it has none)."""
    if request.prompt is not None:
        return request.prompt
    template = None if tokenizer.chat_template else TULU_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(list(request.messages), chat_template=template,
                                         add_generation_prompt=True, tokenize=False)


def encode_request(tokenizer, request: GenerationRequest) -> list[int]:
    """Token ids with BOS exactly once: added by the tokenizer unless the template already wrote it."""
    text = render_text(tokenizer, request)
    has_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    return list(tokenizer(text, add_special_tokens=not has_bos)["input_ids"])


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
            yield text[len(shown):]
        shown = text
        if stopped:
            return
