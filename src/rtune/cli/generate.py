"""`rtune generate`: answer an instruction set with any backend; cached, resumable, AlpacaEval-format output."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rtune.generation.hf import DEFAULT_BATCH_SIZE

console = Console(stderr=True)

CACHE_NAME = "generation_cache.sqlite"


def default_cache(out: Path) -> Path:
    """One cache per run directory, shared by every output written there."""
    return out.parent / CACHE_NAME


def generator_name(model: str, urial_mode: str | None) -> str:
    from rtune.generation import parse_spec

    base = Path(parse_spec(model).model.rstrip("/")).name
    return f"{base}-{Path(urial_mode).stem}" if urial_mode else base


def command(
    model: str = typer.Option(..., "--model", help="hf:MODEL or a bare model spec, vllm:MODEL, openai:MODEL or openai:MODEL@URL."),
    input_: str = typer.Option(..., "--input", help="alpaca_eval, just_eval, or a JSON/JSONL/CSV file with 'instruction' (or 'prompt')."),
    out: Path = typer.Option(..., "--out", help="Output JSON (AlpacaEval format)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf, vllm or openai (default: from the spec, else hf)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Prompts per batch (hf); larger is faster while memory lasts."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Requests in flight (openai)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="hf on CPU: bf16 autocast (default: on where the CPU has AMX)."),
    max_new_tokens: int = typer.Option(2048, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (the paper's setting)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
    urial_mode: Optional[str] = typer.Option(None, "--urial", help="In-context alignment prompt: urial, urial_r, 0shot, or a prompt file with {instruction}."),
    no_chat_template: bool = typer.Option(False, "--no-chat-template", help="Send the instruction as raw text, no template."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N instructions."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local datasets for named inputs (default: $RTUNE_DATA_DIR)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help=f"SQLite cache (default: {CACHE_NAME} beside --out)."),
    name: Optional[str] = typer.Option(None, "--name", help="The 'generator' field (default: model name, plus the URIAL mode)."),
) -> None:
    """Generate answers to an instruction set; rerunning skips everything already generated."""
    from rtune.evals import urial
    from rtune.generation import DecodingParams, from_spec
    from rtune.generation.instructions import PromptStyle, load_instructions, output_row
    from rtune.generation.progress import generate_with_progress
    from rtune.io import atomic_write_json

    instructions = load_instructions(input_, data_dir, limit)
    style = PromptStyle(urial_template=urial.load_template(urial_mode) if urial_mode else None,
                        chat_template=not no_chat_template)
    params = DecodingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=tuple(stop), seed=seed)
    requests = [style.request(item.text, params) for item in instructions]
    cache_path = cache or default_cache(out)
    generator = from_spec(model, backend=backend, cache=cache_path, base_url=base_url, api_key_env=api_key_env,
                          batch_size=batch_size, concurrency=concurrency, bf16=bf16)
    results = generate_with_progress(generator, requests, "generate")
    label = name or generator_name(model, urial_mode)
    atomic_write_json(out, [output_row(item, style.clean(result.text), label) for item, result in zip(instructions, results)])
    truncated = sum(result.finish_reason == "length" for result in results)
    console.print(f"wrote {len(results)} outputs to {out} ({generator.misses} generated, {generator.hits} from cache {cache_path}; "
                  f"{truncated} stopped at --max-new-tokens)", soft_wrap=True)
