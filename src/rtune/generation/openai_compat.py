"""Any OpenAI-compatible server (OpenAI, `vllm serve`, llama.cpp, Ollama) as a generator.

Requests run on a bounded thread pool. Retries with exponential backoff and jitter on 429, 5xx,
connection errors and timeouts are the openai client's own (it also honours Retry-After); we
set how many and how long each request may take, and turn what is left into one clear error.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Iterator

from rtune.errors import RtuneError
from rtune.generation.base import GenerationRequest, GenerationResult, TokenLogprob, in_request_order
from rtune.generation.prompting import stream_until_stop, truncate_at_stop
from rtune.io import stable_hash

OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # local servers ignore the key, the client insists on one


def _api_key(env_name: str, base_url: str | None, named: bool) -> str:
    key = os.environ.get(env_name)
    if key:
        return key
    if base_url is None or named:
        raise RtuneError(f"no API key: set the environment variable {env_name}")
    return NO_KEY


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _chat_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    if logprobs is None or not logprobs.content:
        return None
    return [TokenLogprob(token=item.token, logprob=item.logprob,
                         top={alt.token: alt.logprob for alt in (item.top_logprobs or [])})
            for item in logprobs.content]


def _completion_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    if logprobs is None or not logprobs.tokens:
        return None
    tops = logprobs.top_logprobs or [None] * len(logprobs.tokens)
    return [TokenLogprob(token=token, logprob=logprob if logprob is not None else float("nan"), top=dict(top or {}))
            for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, tops)]


class OpenAIGenerator:
    """Chat requests go to /chat/completions (the server applies the template), raw prompts to /completions."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 6):
        import openai

        self.model = model
        self.base_url = base_url
        self.concurrency = max(1, concurrency)
        key = _api_key(api_key_env or "OPENAI_API_KEY", base_url, named=api_key_env is not None)
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self.fingerprint = stable_hash({"backend": "openai", "base_url": (base_url or OPENAI_URL).rstrip("/"), "model": model})
        self.calls = 0  # requests that returned; tests count them

    def _common(self, request: GenerationRequest) -> dict:
        params = request.params
        args: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens, "temperature": params.temperature}
        if params.top_p != 1.0:
            args["top_p"] = params.top_p
        if params.stop:
            args["stop"] = list(params.stop)
        if params.temperature > 0:
            args["seed"] = params.seed
        return args

    @contextlib.contextmanager
    def _explained(self):
        """What is left after the client's retries becomes one RtuneError naming the server and model."""
        import openai

        try:
            yield
        except openai.APIStatusError as exc:
            raise RtuneError(f"{self.base_url or OPENAI_URL}: model '{self.model}' answered HTTP {exc.status_code}: {exc.message}") from exc
        except openai.APIError as exc:  # connection errors and timeouts
            raise RtuneError(f"{self.base_url or OPENAI_URL}: request failed after retries ({type(exc).__name__}: {exc})") from exc

    def _call(self, request: GenerationRequest) -> GenerationResult:
        with self._explained():
            result = self._chat(request) if request.messages is not None else self._complete(request)
        text, stopped = truncate_at_stop(result.text, request.params.stop)
        return result.model_copy(update={"text": text, "finish_reason": "stop" if stopped else result.finish_reason})

    def _chat(self, request: GenerationRequest) -> GenerationResult:
        args = self._common(request)
        if request.params.top_logprobs:
            args.update(logprobs=True, top_logprobs=request.params.top_logprobs)
        response = self.client.chat.completions.create(messages=list(request.messages), **args)
        choice = response.choices[0]
        return GenerationResult(
            text=choice.message.content or "", finish_reason=_finish(choice.finish_reason),
            prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
            completion_tokens=response.usage.completion_tokens if response.usage else 0,
            logprobs=_chat_logprobs(choice.logprobs) if request.params.top_logprobs else None,
        )

    def _complete(self, request: GenerationRequest) -> GenerationResult:
        args = self._common(request)
        if request.params.top_logprobs:
            args["logprobs"] = request.params.top_logprobs
        response = self.client.completions.create(prompt=request.prompt, **args)
        choice = response.choices[0]
        return GenerationResult(
            text=choice.text or "", finish_reason=_finish(choice.finish_reason),
            prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
            completion_tokens=response.usage.completion_tokens if response.usage else 0,
            logprobs=_completion_logprobs(choice.logprobs) if request.params.top_logprobs else None,
        )

    def stream(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Results as they complete, at most `concurrency` requests in flight; the first failure stops the rest."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rtune-openai")
        try:
            pending = {pool.submit(self._call, request): index for index, request in enumerate(requests)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    result = future.result()
                    self.calls += 1
                    yield index, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(self.stream(requests), len(requests))

    def stream_text(self, request: GenerationRequest) -> Iterator[str]:
        """Tokens as the server sends them (`stream=True`), for interactive chat."""
        args = self._common(request)
        with self._explained():
            yield from self._stream_pieces(request, args)

    def _stream_pieces(self, request: GenerationRequest, args: dict) -> Iterator[str]:
        if request.messages is not None:
            chunks = self.client.chat.completions.create(messages=list(request.messages), stream=True, **args)
            pieces = (chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        else:
            chunks = self.client.completions.create(prompt=request.prompt, stream=True, **args)
            pieces = (chunk.choices[0].text or "" for chunk in chunks if chunk.choices)
        yield from stream_until_stop(pieces, request.params.stop)
