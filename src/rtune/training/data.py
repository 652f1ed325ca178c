"""Training data: records checked against the method, tokenized with span labels, batched by length.

When `--method` and the data disagree (decided here, so the user hears it before any compute):
- a record with `meta.method` set to the other method (a file prepared for that method) is an error;
- `it` needs prompts: a file whose prompts are all empty is response-only data, an error that
  suggests `--method rt`; single records with an empty prompt are skipped and counted;
- text that already carries the template (`<|user|>` / `<|assistant|>` markers at the start of a
  prompt or completion) is an error: rtune renders the template itself, rendering twice would
  train on the markers.
Records with an empty completion are skipped (nothing to learn from) and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rtune.data.records import Record, validate_row
from rtune.errors import RtuneError
from rtune.io import read_jsonl
from rtune.templates import ASSISTANT_MARKER, IGNORE_INDEX, USER_MARKER, Method, encode_records


@dataclass
class TrainingRecords:
    records: list[Record]
    skipped_empty_completion: int = 0
    skipped_empty_prompt: int = 0


def _check_against_method(record: Record, method: Method, where: str) -> None:
    declared = record.meta.get("method")
    if declared is not None and declared != method:
        raise RtuneError(
            f"{where}: record '{record.id}' is marked meta.method={declared!r} but --method is {method!r}; "
            f"train with --method {declared} or rebuild the data"
        )
    for name, text in (("prompt", record.prompt), ("completion", record.completion)):
        if text.lstrip().startswith((USER_MARKER.strip(), ASSISTANT_MARKER.strip())):
            raise RtuneError(
                f"{where}: record '{record.id}' {name} already starts with a template marker "
                f"({text.lstrip()[:14]!r}); give raw prompt/completion text, "
                f"rtune renders the {method.upper()} template itself"
            )


def load_training_records(path: str | Path, method: Method) -> TrainingRecords:
    """Read a record JSONL file for `method` (RT accepts response-only records with empty prompts)."""
    result = TrainingRecords(records=[])
    seen: set[str] = set()
    rows = read_jsonl(path)
    if not rows:
        raise RtuneError(f"{path}: no records")
    for index, row in enumerate(rows, start=1):
        where = f"{path}:{index}"
        record = validate_row(row, where)
        if record.id in seen:
            raise RtuneError(f"{where}: duplicate id '{record.id}'")
        seen.add(record.id)
        _check_against_method(record, method, where)
        if not record.completion.strip():
            result.skipped_empty_completion += 1
        elif method == "it" and not record.prompt.strip():
            result.skipped_empty_prompt += 1
        else:
            result.records.append(record)
    if method == "it" and result.skipped_empty_prompt and not result.records:
        raise RtuneError(
            f"{path}: every record has an empty prompt, so this is response-only data; "
            "instruction tuning needs prompts (use --method rt)"
        )
    if not result.records:
        raise RtuneError(f"{path}: no record has a non-empty completion to train on")
    return result


class TokenizedDataset(torch.utils.data.Dataset):
    """Pre-tokenized examples: `input_ids` and `labels` (IGNORE_INDEX outside the supervised spans)."""

    def __init__(self, input_ids: list[list[int]], labels: list[list[int]]):
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def n_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def n_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for labels in self.labels for label in labels)


@dataclass
class EncodingReport:
    examples: int
    tokens: int
    supervised_tokens: int
    truncated: int
    lost_eos: int
    dropped_no_supervision: list[str] = field(default_factory=list)


def build_dataset(
    records: list[Record], tokenizer, method: Method, max_length: int, where: str
) -> tuple[TokenizedDataset, EncodingReport]:
    """Tokenize with span labels; fail when nothing at all is supervised."""
    encoded = encode_records(records, tokenizer, method, max_length)
    if not encoded.examples:
        raise RtuneError(
            f"{where}: no supervised tokens in any of {len(records)} records "
            f"(every response was cut off by --max-length {max_length}, or is empty after tokenization); "
            "raise --max-length or check the completions"
        )
    dataset = TokenizedDataset([e.input_ids for e in encoded.examples], [e.labels for e in encoded.examples])
    report = EncodingReport(
        len(dataset),
        dataset.n_tokens,
        dataset.n_supervised,
        encoded.truncated,
        encoded.lost_eos,
        encoded.dropped_no_supervision,
    )
    return dataset, report


class PaddingCollator:
    """Right-pads a batch to its longest example; padding is masked out of attention and loss."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class LengthGroupedShuffleSampler(torch.utils.data.Sampler[int]):
    """A fresh permutation each epoch, seeded by (seed, epoch), with similar lengths batched together.

    Examples are shuffled, cut into groups of `group_batches` batches, sorted by length inside
    each group and split into batches; the batches are then shuffled again so long and short ones
    alternate. The order depends only on (seed, epoch), which is what makes resume exact: the
    trainer calls `set_epoch` and skips the batches already seen.
    """

    def __init__(
        self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True, group_batches: int = 16
    ):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.group_batches = group_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if not self.group_by_length:
            return iter(order)
        group = self.batch_size * self.group_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), group):
            chunk = sorted(order[start : start + group], key=lambda i: -self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        # Keep ragged batches at the end so every batch but the last one stays full.
        full = [b for b in batches if len(b) == self.batch_size]
        ragged = [b for b in batches if len(b) != self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return iter([i for batch in shuffled + ragged for i in batch])
