"""`rtune chat`: talk to a model in the terminal, tokens streamed as they are written."""

from __future__ import annotations

import sys

import typer

from rtune.cli.options import option
from rtune.generation.openai_compat import RetrySettings as R


def _read_line() -> str | None:
    line = sys.stdin.readline()
    return line if line else None


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def command(
    model: str = typer.Option(
        ..., "--model", help="hf:MODEL or a bare model spec, vllm:MODEL, openai:MODEL or openai:MODEL@URL."
    ),
    backend: str | None = typer.Option(None, "--backend", help="hf, vllm or openai (default: from the spec, else hf)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend)."),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."
    ),
    timeout: float = option(R, "timeout", min=0.001),
    max_retries: int = option(R, "max_retries", min=0),
    system: str | None = typer.Option(None, "--system", help="System prompt (change it in the chat with /system)."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Interactive multi-turn chat in the model's own template; /reset, /system, /save FILE, /quit."""
    from rtune.generation import DecodingParams, from_spec
    from rtune.generation.chat import ChatSession, run_chat

    generator = from_spec(
        model, backend=backend, base_url=base_url, api_key_env=api_key_env, timeout=timeout, max_retries=max_retries
    )
    params = DecodingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    run_chat(ChatSession(generator, params, model=model, system=system), _read_line, _write)
