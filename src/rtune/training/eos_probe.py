"""Has the model learned to stop? At each epoch end, answer a few held-out instructions and count EOS endings.

A model that never learned to end its answer runs to the token budget on every prompt (RT and IT
both have to learn it from the `{eos}` they are trained on). The probe answers the first N
instructions of the packaged held-out set greedily with the inference prompt and logs, into the
run's metrics.jsonl, the share of answers that ended with EOS before `eos_probe_tokens` tokens.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from rtune.io import append_jsonl


def probe_instructions(n: int) -> list[str]:
    from rtune.data import registry
    from rtune.data.records import read_records

    return [record.prompt for record in read_records(registry.local_file("heldout", None)).records[:n]]


def eos_rate(model, tokenizer, instructions: list[str], max_new_tokens: int) -> dict:
    """Greedy answers in one batch: the share that ended with EOS, and the mean answer length in tokens."""
    from rtune.generation import DecodingParams, GenerationRequest
    from rtune.generation.hf import HFGenerator
    from rtune.templates import inference_prompt

    params = DecodingParams(max_new_tokens=max_new_tokens)
    generator = HFGenerator.of_loaded(model, tokenizer, batch_size=len(instructions))
    results = generator.generate(
        [GenerationRequest(prompt=inference_prompt(text), params=params) for text in instructions]
    )
    ended = sum(result.finish_reason == "stop" for result in results)
    return {
        "eos_rate": ended / len(results),
        "eos_probe_n": len(results),
        "eos_probe_mean_tokens": sum(r.completion_tokens for r in results) / len(results),
    }


class EosProbe(TrainerCallback):
    """Runs `eos_rate` on the main process at every epoch end and appends it to metrics.jsonl (with step and epoch)."""

    def __init__(self, path: Path, tokenizer, n: int, max_new_tokens: int):
        self.path, self.tokenizer, self.max_new_tokens = path, tokenizer, max_new_tokens
        self.instructions = probe_instructions(n)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return control
        was_training = model.training
        model.eval()
        try:
            found = eos_rate(model, self.tokenizer, self.instructions, self.max_new_tokens)
        finally:
            model.train(was_training)
        append_jsonl(self.path, {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **found})
        return control
