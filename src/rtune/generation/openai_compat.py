"""Any OpenAI-compatible server (OpenAI, `vllm serve`, llama.cpp, Ollama) as a generator.

Requests run on a few daemon threads. A timeout, a refused connection, HTTP 408/409/429 or 5xx is
retried `max_retries` times, waiting as the server asks (Retry-After) or with exponential backoff and
jitter; each wait is announced on stderr, so a hanging server is never silent. Every answer passes one
validator (a JSON object with a usable choice) before it is read; what cannot be used, and what is left
after the retries, becomes one error naming the server (its credentials masked).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rtune.errors import RtuneError
from rtune.generation.base import GenerationRequest, GenerationResult, TokenLogprob, in_request_order
from rtune.generation.render import stream_until_stop, truncate_at_stop
from rtune.io import stable_hash
from rtune.redact import redact

OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # local servers ignore the key, the client insists on one
DEFAULT_TIMEOUT = 120.0  # seconds for one whole answer: 2,048 tokens from a slow server take about this long
DEFAULT_RETRIES = 3
RETRY_STATUS = (408, 409, 429)  # and every 5xx
MAX_WAIT = 60.0  # the longest Retry-After we honour


class RetrySettings(BaseModel):
    """How long to wait for a server and how often to try again: the fields (and `--timeout`, `--max-retries`)
    of every command that may call one, so the hint in each retry and timeout message names real options."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, description="seconds to wait for one answer from a server (openai)")
    max_retries: int = Field(DEFAULT_RETRIES, ge=0, description="tries again after a timeout, HTTP 429 or 5xx (openai)")


def _notice(message: str) -> None:
    """A wait the user should know about (it prints above a progress bar)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[yellow]waiting:[/yellow] {escape(message)}")


def _retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms or retry-after), at most MAX_WAIT."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return min(float(response.headers[name]) / scale, MAX_WAIT)
        except (KeyError, ValueError):
            continue
    return None


def _usable_body(text: str, endpoint: str) -> str | None:
    """Why a 200 body cannot be read as an answer (None: it can): JSON, an object, a first choice with text."""
    try:
        body = json.loads(text)
    except ValueError:
        return "a body that is not JSON"
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "no choices"
    content = choices[0].get("message") if endpoint == "chat" else choices[0]
    if not isinstance(content, dict) or not isinstance(
        content.get("content" if endpoint == "chat" else "text"), (str, type(None))
    ):
        return "a choice without text"
    return None


def _api_key(env_name: str, base_url: str | None, named: bool) -> str:
    key = os.environ.get(env_name)
    if key:
        return key
    if base_url is None or named:
        raise RtuneError(f"no API key: set the environment variable {env_name}")
    return NO_KEY


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _usage(response: Any) -> dict:
    usage = getattr(response, "usage", None)
    return {
        "prompt_tokens": getattr(usage, "prompt_tokens", None) or 0,
        "completion_tokens": getattr(usage, "completion_tokens", None) or 0,
    }


def _chat_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    if logprobs is None or not logprobs.content:
        return None
    return [
        TokenLogprob(
            token=item.token, logprob=item.logprob, top={alt.token: alt.logprob for alt in (item.top_logprobs or [])}
        )
        for item in logprobs.content
    ]


def _completion_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    if logprobs is None or not logprobs.tokens:
        return None
    tops = logprobs.top_logprobs or [None] * len(logprobs.tokens)
    return [
        TokenLogprob(token=token, logprob=logprob if logprob is not None else float("nan"), top=dict(top or {}))
        for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, tops, strict=False)
    ]


class OpenAIGenerator:
    """Chat requests go to /chat/completions (the server applies the template), raw prompts to /completions."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_RETRIES,
    ):
        import openai

        self.model = model
        self.base_url = base_url
        self.where = redact(base_url or OPENAI_URL)  # what messages show: never the credentials
        self.concurrency = max(1, concurrency)
        self.timeout, self.max_retries = timeout, max(0, max_retries)
        key = _api_key(api_key_env or "OPENAI_API_KEY", base_url, named=api_key_env is not None)
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)  # retries: ours
        self.fingerprint = stable_hash(
            {"backend": "openai", "base_url": (base_url or OPENAI_URL).rstrip("/"), "model": model}
        )
        self.calls = 0  # requests that returned; tests count them
        self._stopped = threading.Event()  # set when a stream ends: requests still in flight try no more

    def _common(self, request: GenerationRequest) -> dict:
        params = request.params
        args: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
        }
        if params.top_p != 1.0:
            args["top_p"] = params.top_p
        if params.stop:
            args["stop"] = list(params.stop)
        if params.temperature > 0:
            args["seed"] = params.seed
        return args

    @contextlib.contextmanager
    def _explained(self):
        """What is left after our retries becomes one RtuneError naming the server and model."""
        import openai

        tries = f"{self.max_retries + 1} tries"
        try:
            yield
        except openai.APIStatusError as exc:
            raise RtuneError(
                f"{self.where}: model '{self.model}' answered HTTP {exc.status_code}: {exc.message}"
            ) from exc
        except openai.APITimeoutError as exc:
            raise RtuneError(
                f"{self.where}: no answer within {self.timeout:g} s ({tries}); is the server up? "
                "(--timeout, --max-retries)"
            ) from exc
        except openai.APIError as exc:  # connection errors
            raise RtuneError(f"{self.where}: request failed after {tries} ({type(exc).__name__}: {exc})") from exc

    def _retry_reason(self, exc: Exception) -> tuple[str, float | None] | None:
        """Why a failed request is worth another try, and how long the server asked us to wait; None: it is not."""
        import openai

        if isinstance(exc, openai.APIStatusError):
            retry = exc.status_code in RETRY_STATUS or exc.status_code >= 500
            return (f"HTTP {exc.status_code}", _retry_after(exc.response)) if retry else None
        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within {self.timeout:g} s", None
        return ("cannot connect", None) if isinstance(exc, openai.APIConnectionError) else None

    def _with_retries(self, send: Callable[[], Any]) -> Any:
        """`send()`, tried again while `_retry_reason` allows, each wait announced; none once the run has stopped."""
        import openai

        for attempt in range(self.max_retries + 1):
            try:
                return send()
            except openai.APIError as exc:
                why = self._retry_reason(exc)
                if why is None or attempt == self.max_retries:
                    raise
                reason, asked = why
                delay = asked if asked is not None else min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())
                _notice(
                    f"{self.where}: {reason}; try {attempt + 2} of {self.max_retries + 1} in {delay:.1f} s "
                    "(--timeout, --max-retries)"
                )
                if self._stopped.wait(delay):  # Ctrl-C, or another request failed for good
                    raise
        raise AssertionError("unreachable")

    def _response(self, endpoint: str, create: Callable[..., Any], **args) -> Any:
        """The parsed response of one request, once its body has passed the validator."""
        raw = self._with_retries(lambda: create(**args))
        problem = _usable_body(raw.text, endpoint)
        if problem is not None:
            raise RtuneError(
                f"{self.where}: model '{self.model}' answered HTTP {raw.status_code} with {problem}: {raw.text[:100]!r}"
            )
        return raw.parse()

    def _call(self, request: GenerationRequest) -> GenerationResult:
        with self._explained():
            result = self._chat(request) if request.messages is not None else self._complete(request)
        text, stopped = truncate_at_stop(result.text, request.params.stop)
        return result.model_copy(update={"text": text, "finish_reason": "stop" if stopped else result.finish_reason})

    def _chat(self, request: GenerationRequest) -> GenerationResult:
        args = self._common(request)
        if request.params.top_logprobs:
            args.update(logprobs=True, top_logprobs=request.params.top_logprobs)
        response = self._response(
            "chat", self.client.chat.completions.with_raw_response.create, messages=list(request.messages), **args
        )
        choice = response.choices[0]
        return GenerationResult(
            text=choice.message.content or "",
            finish_reason=_finish(choice.finish_reason),
            **_usage(response),
            logprobs=_chat_logprobs(choice.logprobs) if request.params.top_logprobs else None,
        )

    def _complete(self, request: GenerationRequest) -> GenerationResult:
        args = self._common(request)
        if request.params.top_logprobs:
            args["logprobs"] = request.params.top_logprobs
        response = self._response(
            "completions", self.client.completions.with_raw_response.create, prompt=request.prompt, **args
        )
        choice = response.choices[0]
        return GenerationResult(
            text=choice.text or "",
            finish_reason=_finish(choice.finish_reason),
            **_usage(response),
            logprobs=_completion_logprobs(choice.logprobs) if request.params.top_logprobs else None,
        )

    def stream(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Results as they complete, at most `concurrency` requests in flight; the first failure stops the rest.

        Once it ends, requests in flight try no more. The workers are daemon threads: after Ctrl-C (or a
        caller that stops reading) nothing waits for a hanging server, neither this call nor the exit.
        """
        self._stopped.clear()
        todo, finished = queue.SimpleQueue(), queue.SimpleQueue()
        for pair in enumerate(requests):
            todo.put(pair)

        def work() -> None:
            while not self._stopped.is_set():
                try:
                    index, request = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    finished.put((index, self._call(request), None))
                except BaseException as exc:  # raised in the caller's thread below
                    finished.put((index, None, exc))

        workers = [
            threading.Thread(target=work, daemon=True, name="rtune-openai")
            for _ in range(min(self.concurrency, len(requests)))
        ]
        for worker in workers:
            worker.start()
        interrupted = False
        try:
            for _ in requests:
                index, result, failure = finished.get()
                if failure is not None:
                    raise failure
                self.calls += 1
                yield index, result
        except (KeyboardInterrupt, GeneratorExit):
            interrupted = True
            raise
        finally:
            self._stopped.set()
            for worker in workers if not interrupted else ():
                worker.join()

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(self.stream(requests), len(requests))

    def stream_text(self, request: GenerationRequest) -> Iterator[str]:
        """Tokens as the server sends them (`stream=True`), for interactive chat."""
        args = self._common(request)
        with self._explained():
            yield from self._stream_pieces(request, args)

    def _stream_pieces(self, request: GenerationRequest, args: dict) -> Iterator[str]:
        if request.messages is not None:
            chunks = self._with_retries(
                lambda: self.client.chat.completions.create(messages=list(request.messages), stream=True, **args)
            )
            pieces = (chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        else:
            chunks = self._with_retries(
                lambda: self.client.completions.create(prompt=request.prompt, stream=True, **args)
            )
            pieces = (chunk.choices[0].text or "" for chunk in chunks if chunk.choices)
        yield from stream_until_stop(pieces, request.params.stop)
