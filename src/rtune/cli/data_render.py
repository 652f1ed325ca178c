"""`rtune data render`: exactly which characters and tokens of a record carry the loss."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from rtune.data.records import read_records

console = Console(stderr=True)


def _show(
    console_out: Console, record_id: str, text: str, spans: list[tuple[int, int]], n_tokens: int, n_supervised: int
) -> None:
    styled = Text()
    cursor = 0
    for start, end in spans:
        styled.append(text[cursor:start], style="dim")
        styled.append(text[start:end], style="bold green")
        cursor = end
    styled.append(text[cursor:], style="dim")
    console_out.rule(f"{record_id}  ·  {n_tokens} tokens, {n_supervised} supervised (green)")
    console_out.print(styled, highlight=False, markup=False)


def render(
    file: Path = typer.Argument(..., help="Record JSONL."),
    method: str = typer.Option(..., "--method", help="it or rt."),
    model: str = typer.Option(..., "--model", help="Model whose tokenizer renders the text."),
    limit: int | None = typer.Option(None, "--limit", min=1),
    max_length: int | None = typer.Option(
        None, "--max-length", min=2, help="Truncate to this many tokens, as training does."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per record: id, text, supervised, input_ids, labels."
    ),
    strict: bool = typer.Option(False, "--strict"),
) -> None:
    """Show exactly which characters and tokens carry the loss."""
    from rtune.errors import RtuneError
    from rtune.models import load_tokenizer
    from rtune.templates import METHODS, encode_records, render_record

    if method not in METHODS:
        raise RtuneError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    loaded = read_records(file, strict=strict)
    records = loaded.records[:limit] if limit else loaded.records
    tokenizer = load_tokenizer(model)
    encoded = encode_records(records, tokenizer, method, max_length)
    by_id = {record.id: record for record in records}
    out = Console(soft_wrap=True)
    for record_id, example in zip(encoded.ids, encoded.examples, strict=False):
        rendered = render_record(by_id[record_id], method, tokenizer.eos_token)
        text = rendered.text[: example.char_end]  # what survives truncation
        spans = [(start, min(end, example.char_end)) for start, end in rendered.supervised if start < example.char_end]
        if as_json:
            print(
                json.dumps(
                    {
                        "id": record_id,
                        "text": text,
                        "supervised": [list(s) for s in spans],
                        "input_ids": example.input_ids,
                        "labels": example.labels,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            _show(out, record_id, text, spans, len(example.input_ids), example.n_supervised)
            if example.truncated:
                out.print(
                    f"[red]… truncated at {len(example.input_ids)} tokens"
                    f"{' (EOS lost)' if example.lost_eos else ''}[/red]"
                )
    console.print(
        f"{len(encoded.examples)} rendered ({method}); skipped {loaded.skipped_empty} empty; "
        f"truncated {encoded.truncated}, of which {encoded.lost_eos} lost their EOS; "
        f"dropped {len(encoded.dropped_no_supervision)} left with no supervised token"
        + (f" ({', '.join(encoded.dropped_no_supervision[:5])})" if encoded.dropped_no_supervision else "")
    )
