"""In-process vLLM backend (optional extra, GPU machines): same requests, same prompts, same results.

Prompts are tokenized here exactly as the hf backend does (chat template, BOS once) and handed
to vLLM as token ids, so switching backend never changes what the model sees.
"""

from __future__ import annotations

from collections.abc import Iterator

from rtune.errors import RtuneError
from rtune.generation.base import DecodingParams, GenerationRequest, GenerationResult, TokenLogprob, in_request_order
from rtune.generation.render import encode_request, truncate_at_stop
from rtune.io import stable_hash


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise RtuneError(
            "the vllm backend needs vLLM, which is not installed: pip install vllm "
            "(Linux with a CUDA GPU); or use --backend hf, or a vLLM server via openai:MODEL@URL"
        ) from exc
    return vllm


class VLLMGenerator:
    """vLLM schedules requests itself; we hand them over in chunks so finished ones can be cached."""

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        chunk_size: int = 256,
    ):
        from rtune.models import load_tokenizer, model_fingerprint, prepare_model

        vllm = _import_vllm()
        self.spec = model
        self.chunk_size = max(1, chunk_size)
        self.fingerprint = stable_hash({"backend": "vllm", "model": model_fingerprint(model)})
        self.llm = vllm.LLM(
            model=prepare_model(model),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
        )
        self.tokenizer = load_tokenizer(model)
        self.calls = 0

    @staticmethod
    def _sampling(params: DecodingParams):
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            logprobs=params.top_logprobs,
        )

    def _result(self, output, params: DecodingParams) -> GenerationResult:
        completion = output.outputs[0]
        text, stopped = truncate_at_stop(completion.text, params.stop)
        logprobs = None
        if params.top_logprobs and completion.logprobs:
            logprobs = []
            for token_id, alternatives in zip(completion.token_ids, completion.logprobs, strict=False):
                chosen = alternatives[token_id]
                top = {
                    alt.decoded_token: alt.logprob
                    for alt in alternatives.values()
                    if alt.rank is not None and alt.rank <= params.top_logprobs
                }
                logprobs.append(TokenLogprob(token=chosen.decoded_token or "", logprob=chosen.logprob, top=top))
        return GenerationResult(
            text=text,
            finish_reason="length" if completion.finish_reason == "length" and not stopped else "stop",
            prompt_tokens=len(output.prompt_token_ids),
            completion_tokens=len(completion.token_ids),
            logprobs=logprobs,
        )

    def stream(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            prompts = [{"prompt_token_ids": encode_request(self.tokenizer, request)} for request in chunk]
            outputs = self.llm.generate(prompts, [self._sampling(request.params) for request in chunk], use_tqdm=False)
            self.calls += 1
            for offset, (request, output) in enumerate(zip(chunk, outputs, strict=False)):
                yield start + offset, self._result(output, request.params)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(self.stream(requests), len(requests))
