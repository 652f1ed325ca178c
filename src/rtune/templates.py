"""The paper's Tulu-style chat template and IT/RT rendering with exact supervision.

The loss spans are computed on characters while the text is built, then mapped onto tokens
through the tokenizer's offsets. Nothing searches token ids for a response marker: that
approach (TRL's removed completion-only collator) silently masks whole examples when a
tokenizer merges the marker with its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rtune.data.records import Record

Method = Literal["it", "rt"]
METHODS: tuple[str, ...] = ("it", "rt")

USER_MARKER = "<|user|>\n"
ASSISTANT_MARKER = "<|assistant|>\n"
IGNORE_INDEX = -100

# Rendered by Hugging Face with trim_blocks/lstrip_blocks: user turn "<|user|>\n{content}\n",
# assistant turn "<|assistant|>\n{content}{eos}\n", generation prompt "<|assistant|>\n".
TULU_CHAT_TEMPLATE = """{% for message in messages %}
{% if message['role'] == 'system' %}
<|system|>
{{ message['content'] }}
{% elif message['role'] == 'user' %}
<|user|>
{{ message['content'] }}
{% elif message['role'] == 'assistant' %}
<|assistant|>
{{ message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
<|assistant|>
{% endif %}
{% endfor %}"""


def inference_prompt(instruction: str) -> str:
    """What IT and RT models are prompted with at test time (RT models too, though they never saw `<|user|>`)."""
    return f"{USER_MARKER}{instruction}\n{ASSISTANT_MARKER}"


@dataclass(frozen=True)
class Rendered:
    text: str
    supervised: list[tuple[int, int]]  # [start, end) character spans that carry the loss

    def supervised_text(self) -> str:
        return "".join(self.text[start:end] for start, end in self.supervised)


def render(prompt: str, completion: str, method: Method, eos_token: str) -> Rendered:
    """IT = `<|user|>\\n{prompt}\\n<|assistant|>\\n{completion}{eos}\\n`; RT drops the user block.

    Supervised text is `{completion}{eos}\\n` in both, exactly as the paper trains.
    """
    if method == "it":
        head = f"{USER_MARKER}{prompt}\n{ASSISTANT_MARKER}"
    elif method == "rt":
        head = ASSISTANT_MARKER
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    text = f"{head}{completion}{eos_token}\n"
    return Rendered(text=text, supervised=[(len(head), len(text))])


def render_record(record: Record, method: Method, eos_token: str) -> Rendered:
    return render(record.prompt, record.completion, method, eos_token)


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    char_end: int = 0  # characters of the rendered text covered by the kept tokens
    truncated: bool = False
    lost_eos: bool = False
    split_at_boundary: bool = False  # a token straddled a span edge, so the segments were tokenized apart

    @property
    def n_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _labels_from_offsets(
    ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
) -> tuple[list[int], bool]:
    """Label a token when its characters lie inside a supervised span; report tokens crossing an edge."""
    labels, straddles = [], False
    for token_id, (start, end) in zip(ids, offsets, strict=False):
        inside = end > start and any(s <= start and end <= e for s, e in spans)
        straddles |= any(start < edge < end for s, e in spans for edge in (s, e))
        labels.append(token_id if inside else IGNORE_INDEX)
    return labels, straddles


def _encode_segments(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Tokenize the text piecewise at every span edge, so no token can cross an edge."""
    edges = sorted({0, len(text), *(edge for span in spans for edge in span)})
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    for index, (start, end) in enumerate(zip(edges, edges[1:], strict=False)):
        piece = tokenizer(text[start:end], add_special_tokens=index == 0, return_offsets_mapping=True)
        ids += piece["input_ids"]
        offsets += [(a + start, b + start) if b > a else (a, b) for a, b in piece["offset_mapping"]]
    return ids, offsets


def tokenize_rendered(tokenizer, rendered: Rendered, max_length: int | None = None) -> TokenizedExample:
    """Token ids and labels (-100 outside the supervised spans), truncated to `max_length` from the right."""
    encoded = tokenizer(rendered.text, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
    labels, straddles = _labels_from_offsets(ids, offsets, rendered.supervised)
    if straddles:
        ids, offsets = _encode_segments(tokenizer, rendered.text, rendered.supervised)
        labels, _ = _labels_from_offsets(ids, offsets, rendered.supervised)
    example = TokenizedExample(ids, labels, char_end=len(rendered.text), split_at_boundary=straddles)
    if max_length is not None and len(ids) > max_length:
        eos_positions = [
            i
            for i, (t, label) in enumerate(zip(ids, labels, strict=False))
            if t == tokenizer.eos_token_id and label != IGNORE_INDEX
        ]
        example = TokenizedExample(
            ids[:max_length],
            labels[:max_length],
            char_end=max(end for _, end in offsets[:max_length]),
            truncated=True,
            lost_eos=bool(eos_positions) and eos_positions[-1] >= max_length,
            split_at_boundary=straddles,
        )
    return example


@dataclass
class EncodedDataset:
    examples: list[TokenizedExample]
    ids: list[str]
    truncated: int = 0
    lost_eos: int = 0
    dropped_no_supervision: list[str] = field(default_factory=list)
    split_at_boundary: int = 0


def encode_records(records: list[Record], tokenizer, method: Method, max_length: int | None = None) -> EncodedDataset:
    """Render and tokenize every record; examples left with no supervised token are dropped and listed."""
    result = EncodedDataset(examples=[], ids=[])
    for record in records:
        example = tokenize_rendered(tokenizer, render_record(record, method, tokenizer.eos_token), max_length)
        result.truncated += example.truncated
        result.lost_eos += example.lost_eos
        result.split_at_boundary += example.split_at_boundary
        if example.n_supervised == 0:
            result.dropped_no_supervision.append(record.id)
            continue
        result.examples.append(example)
        result.ids.append(record.id)
    return result
