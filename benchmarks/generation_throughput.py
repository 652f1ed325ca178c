"""Generation throughput: batched hf backend vs one-prompt-at-a-time `generate`, same model, same run.

    python benchmarks/generation_throughput.py --data-dir DATA            # the issue's setting
    python benchmarks/generation_throughput.py --n 16 --models smollm2-135m-instruct  # a quicker look

For each model: the first N AlpacaEval instructions as chat turns (the model's template, Tulu for
models without one), greedy, M new tokens. Sequential = batch size 1, which is exactly one
`model.generate` call per prompt (the paper's HF path). Reports tokens/s for both, their ratio,
and how many greedy outputs are identical, for each precision: fp32 (the default) and bf16 (the
opt-in, `--precision bf16`; autocast on a CPU, bf16 weights on a GPU). fp32 must give N/N, else the
script exits 1: that is the batch invariance evaluations rely on, and its speed against bf16's is its
cost. For fp32 it also prices chunked decoding (finished rows are handed back, and cached, every
`CHUNK_TOKENS` new tokens, so a kill loses little) against one
`model.generate` call per batch (`CHUNK_TOKENS` set beyond `--max-new-tokens`): both throughputs and
their ratio, in the same process; the outputs must be identical, else the script exits 1. Optionally
also times the openai backend against running OpenAI-compatible servers (`--openai SPEC ...`), or
against llama.cpp's server on each registered model's GGUF file (`--xllamacpp`, needs
`pip install 'rtune[bench]'`; a quantized model, so its texts differ and only its speed is comparable).
No cache is used: every number is real generation.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

import rtune.generation.hf as hf
from rtune.data.instructions import load_instructions
from rtune.generation import DecodingParams, GenerationRequest, from_spec
from rtune.generation.hf import HFGenerator
from rtune.models import native_bf16


@dataclass
class Timing:
    label: str
    seconds: float
    tokens: int
    texts: list[str]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def timed(label: str, generator, requests: list[GenerationRequest]) -> Timing:
    start = time.perf_counter()
    results = generator.generate(requests)
    seconds = time.perf_counter() - start
    return Timing(label, seconds, sum(r.completion_tokens for r in results), [r.text for r in results])


def line(timing: Timing) -> str:
    return (
        f"  {timing.label:<28} {timing.seconds:8.1f} s  {timing.tokens:6d} tokens  "
        f"{timing.tokens_per_second:7.1f} tok/s"
    )


def precision_name(generator: HFGenerator) -> str:
    """What a run computes in, and whether the hardware does bf16 itself (emulated bf16 is slower than fp32)."""
    if not generator.bf16:
        return "fp32"
    kind = "autocast" if generator.device == "cpu" else "weights"
    return f"bf16 {kind}, {'native' if native_bf16(generator.device.split(':')[0]) else 'emulated'}"


def bench_chunks(generator: HFGenerator, requests: list[GenerationRequest], batched: Timing) -> None:
    """Chunked decoding against one `model.generate` call per batch: the price of losing little to a kill."""
    chunk = hf.CHUNK_TOKENS
    hf.CHUNK_TOKENS = 10**9  # the baseline: one model.generate call per batch, nothing handed back before its end
    whole = timed("hf batched, one call a batch", generator, requests)
    hf.CHUNK_TOKENS = chunk
    print(line(whole), flush=True)
    print(
        f"  chunks of {chunk} tokens run at {batched.tokens_per_second / whole.tokens_per_second:.2f}x the speed "
        f"of one call a batch",
        flush=True,
    )
    if batched.texts != whole.texts:
        raise SystemExit("chunked decoding changed the greedy outputs")


def bench_hf(model: str, requests: list[GenerationRequest], batch_size: int, bf16: bool) -> tuple[Timing, Timing]:
    """Batched and one-at-a-time timings in one precision; fp32 (the default) must give the same texts both ways."""
    generator = HFGenerator(model, batch_size=batch_size, bf16=bf16)
    generator.generate(requests[:1])  # load and warm up outside the clock
    precision = precision_name(generator)
    print(f"{model}  (precision: {precision}, {len(requests)} prompts)", flush=True)
    batched = timed(f"hf batched (batch {batch_size})", generator, requests)
    print(line(batched), flush=True)
    if not bf16:
        bench_chunks(generator, requests, batched)
    generator.batch_size = 1
    sequential = timed("hf one prompt at a time", generator, requests)
    print(line(sequential), flush=True)
    same = sum(a == b for a, b in zip(batched.texts, sequential.texts, strict=False))
    ratio = batched.tokens_per_second / sequential.tokens_per_second
    print(
        f"  speed-up {ratio:.2f}x; {precision}: batched vs one at a time, identical greedy texts: "
        f"{same}/{len(requests)}",
        flush=True,
    )
    if not bf16 and same < len(requests):
        raise SystemExit("fp32 greedy outputs depend on the batch size")
    return batched, sequential


def compare_precisions(fp32: tuple[Timing, Timing], bf16: tuple[Timing, Timing]) -> None:
    """What the batch-invariant default costs: fp32 speed against bf16's, and how often the two agree."""
    for mode, ours, theirs in zip(("batched", "one at a time"), fp32, bf16, strict=True):
        print(
            f"  {mode}: fp32 {ours.tokens_per_second:.1f} tok/s, bf16 {theirs.tokens_per_second:.1f} tok/s "
            f"(bf16/fp32 {theirs.tokens_per_second / ours.tokens_per_second:.2f}x)",
            flush=True,
        )
    same = sum(a == b for a, b in zip(fp32[0].texts, bf16[0].texts, strict=False))
    print(f"  fp32 and bf16 batched texts identical: {same}/{len(fp32[0].texts)}", flush=True)


def bench_openai(spec: str, requests: list[GenerationRequest], concurrency: int) -> None:
    generator = from_spec(spec, concurrency=concurrency)
    generator.generate(requests[:1])
    print(f"{spec}  (concurrency {concurrency})", flush=True)
    print(line(timed("openai backend", generator, requests)), flush=True)


def start_xllamacpp(model: str, parallel: int, context_per_slot: int = 2048):
    """llama.cpp's server (xllamacpp wheel) on the registered model's GGUF, listening on a free local port."""
    try:
        import xllamacpp
    except ImportError:
        raise SystemExit("--xllamacpp needs llama.cpp's server: pip install 'rtune[bench]'") from None

    from rtune.models import REGISTRY, cache_dir

    params = xllamacpp.CommonParams()
    params.model.path = str(REGISTRY[model].gguf(cache_dir() / "gguf"))
    params.n_parallel = parallel
    params.n_ctx = context_per_slot * parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = torch.get_num_threads()
    server = xllamacpp.Server(params)
    return server, f"openai:{model}@{server.listening_address}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--n", type=int, default=64, help="AlpacaEval instructions (the first N)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64, help="hf batch size (64: every prompt in one batch)")
    parser.add_argument(
        "--data-dir", default=None, help="folder with alpaca_eval/alpaca_eval_805.jsonl (default $RTUNE_DATA_DIR)"
    )
    parser.add_argument(
        "--openai",
        nargs="*",
        default=[],
        metavar="SPEC",
        help="also time these openai:MODEL@URL servers (e.g. a llama.cpp server on the same GGUF)",
    )
    parser.add_argument("--xllamacpp", action="store_true", help="also time llama.cpp's server on each model's GGUF")
    parser.add_argument("--no-hf", action="store_true", help="skip the hf comparison (time only the servers)")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16"],
        default=["fp32", "bf16"],
        help="hf precisions to time: fp32 (the default) and bf16 (the opt-in)",
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 keeps numbers stable on a machine shared with other jobs)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    params = DecodingParams(max_new_tokens=args.max_new_tokens)
    instructions = load_instructions("alpaca_eval", args.data_dir, args.n)
    requests = [
        GenerationRequest(messages=({"role": "user", "content": item.text},), params=params) for item in instructions
    ]
    print(
        f"greedy, {args.max_new_tokens} new tokens, {len(requests)} AlpacaEval instructions, "
        f"{torch.get_num_threads()} torch threads, native bf16 on this CPU: {'yes' if native_bf16('cpu') else 'no'}\n",
        flush=True,
    )
    for model in args.models:
        if not args.no_hf:
            runs = {p: bench_hf(model, requests, args.batch_size, p == "bf16") for p in args.precisions}
            if len(runs) == 2:
                compare_precisions(runs["fp32"], runs["bf16"])
        if args.xllamacpp:
            server, spec = start_xllamacpp(model, args.concurrency)
            bench_openai(spec, requests, args.concurrency)
            del server
    for spec in args.openai:
        bench_openai(spec, requests, args.concurrency)


if __name__ == "__main__":
    main()
