"""`rtune data build` and `rtune data render`: records from sources, and what training sees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from rtune.data.records import keep_nonempty, read_records, write_records
from rtune.data.sources import SOURCES, build_records

console = Console(stderr=True)


def build(
    source: str = typer.Argument(..., help=f"One of {', '.join(SOURCES)}, a .jsonl/.json/.csv file, or hf:<dataset id>."),
    out: Path = typer.Option(..., "--out", help="Record JSONL to write."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local copies of the named datasets (default: $RTUNE_DATA_DIR, else the hub)."),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", min=1, help="Keep a seeded random sample of N records."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the paper uses 0)."),
    prompt_field: Optional[str] = typer.Option(None, "--prompt-field", help="Column holding the prompt (local files, hf:)."),
    completion_field: Optional[str] = typer.Option(None, "--completion-field", help="Column holding the response."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an empty prompt or completion instead of skipping it."),
) -> None:
    """Build canonical {id, prompt, completion, source} records."""
    built = build_records(source, data_dir, max_examples, seed, prompt_field, completion_field)
    loaded = keep_nonempty(built.records, strict=strict, where=source)
    write_records(out, loaded.records)
    console.print(f"wrote {len(loaded.records)} records to {out} (from {built.total_rows} rows; "
                  f"skipped {loaded.skipped_empty} with an empty prompt or completion)")
    if built.note:
        console.print(f"[yellow]note:[/yellow] {built.note}")


def _show(console_out: Console, record_id: str, text: str, spans: list[tuple[int, int]], n_tokens: int, n_supervised: int) -> None:
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
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=2, help="Truncate to this many tokens, as training does."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per record: id, text, supervised, input_ids, labels."),
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
    for record_id, example in zip(encoded.ids, encoded.examples):
        rendered = render_record(by_id[record_id], method, tokenizer.eos_token)
        text = rendered.text[: example.char_end]  # what survives truncation
        spans = [(start, min(end, example.char_end)) for start, end in rendered.supervised if start < example.char_end]
        if as_json:
            print(json.dumps({"id": record_id, "text": text, "supervised": [list(s) for s in spans],
                              "input_ids": example.input_ids, "labels": example.labels}, ensure_ascii=False))
        else:
            _show(out, record_id, text, spans, len(example.input_ids), example.n_supervised)
            if example.truncated:
                out.print(f"[red]… truncated at {len(example.input_ids)} tokens{' (EOS lost)' if example.lost_eos else ''}[/red]")
    console.print(
        f"{len(encoded.examples)} rendered ({method}); skipped {loaded.skipped_empty} empty; "
        f"truncated {encoded.truncated}, of which {encoded.lost_eos} lost their EOS; "
        f"dropped {len(encoded.dropped_no_supervision)} left with no supervised token"
        + (f" ({', '.join(encoded.dropped_no_supervision[:5])})" if encoded.dropped_no_supervision else "")
    )
