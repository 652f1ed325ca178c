"""`rtune data refine`: rewrite every completion with an LLM refiner; cached, resumable, with an extraction report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rtune.generation.hf import DEFAULT_BATCH_SIZE

console = Console(stderr=True)


def command(
    file: Path = typer.Argument(..., help="Record JSONL to refine."),
    refiner: str = typer.Option(..., "--refiner", help="hf:MODEL or a bare model spec, vllm:MODEL, openai:MODEL or openai:MODEL@URL."),
    out: Path = typer.Option(..., "--out", help="Refined record JSONL (originals kept in meta.source_completion)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf, vllm or openai (default: from the spec, else hf)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Prompts per batch (hf); larger is faster while memory lasts."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Requests in flight (openai)."),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", min=1, help="Refiner answer budget (the paper used 8,192)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N records."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="SQLite cache (default: generation_cache.sqlite beside --out)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an empty prompt or completion instead of skipping it."),
) -> None:
    """Refine responses for clarity, structure and tone; keep the original where the refiner's answer can't be used."""
    from rtune.cli.generate import default_cache
    from rtune.data.records import read_records, write_records
    from rtune.data.refine import apply_results, refine_request
    from rtune.generation.progress import generate_with_progress
    from rtune.generation import DecodingParams, from_spec

    records = read_records(file, strict=strict).records[:limit]
    generator = from_spec(refiner, backend=backend, cache=cache or default_cache(out), base_url=base_url,
                          api_key_env=api_key_env, batch_size=batch_size, concurrency=concurrency)
    params = DecodingParams(max_new_tokens=max_new_tokens)
    results = generate_with_progress(generator, [refine_request(record, params) for record in records], "refine")
    report = apply_results(records, results, refiner)
    write_records(out, report.records)
    console.print(f"wrote {len(report.records)} records to {out}: extraction rate {report.extraction_rate:.1%} "
                  f"({report.extracted} refined, {report.changed} changed; kept the original for {len(report.no_marker)} "
                  f"without the marker and {len(report.cut_off)} cut off at --max-new-tokens); "
                  f"{generator.misses} generated, {generator.hits} from cache", soft_wrap=True)
