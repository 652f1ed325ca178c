"""The openai backend against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/openai_server.py)."""

from __future__ import annotations

import pytest

from openai_server import Fault, OpenAIServer, Reply
from rtune.errors import RtuneError
from rtune.generation import CachedGenerator, DecodingParams, GenerationCache, GenerationRequest, from_spec


def _generator(server: OpenAIServer, **options):
    options.setdefault("timeout", 5.0)
    return from_spec(f"openai:test-model@{server.base_url}", **options)


def _chat(text: str, **params) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), params=DecodingParams(**params))


def test_chat_and_completions_with_logprobs(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIServer() as server:
        generator = _generator(server)
        chat, raw = generator.generate(
            [
                _chat("what is up", max_new_tokens=50, top_logprobs=2),
                GenerationRequest(prompt="once upon a time", params=DecodingParams(top_logprobs=1)),
            ]
        )
    assert chat.text == "echo: what is up" and chat.finish_reason == "stop"
    assert [t.token for t in chat.logprobs] == ["echo: ", "what ", "is ", "up"]
    assert chat.logprobs[1].logprob == -0.1 and chat.logprobs[1].top == {"what ": -0.1, "<alt>": -2.5}
    assert chat.completion_tokens == 4 and chat.prompt_tokens == 3
    assert raw.text == "echo: once upon a time"
    assert [t.top for t in raw.logprobs][0] == {"echo: ": -0.1}
    bodies = {r.endpoint: r.body for r in server.requests}
    assert bodies["chat"]["messages"] == [{"role": "user", "content": "what is up"}]
    assert bodies["chat"]["max_tokens"] == 50 and bodies["chat"]["temperature"] == 0.0
    assert bodies["chat"]["top_logprobs"] == 2 and bodies["completions"]["logprobs"] == 1
    assert "seed" not in bodies["chat"]  # greedy requests send no sampling-only fields


def test_no_logprobs_unless_asked_and_stop_strings_are_applied():
    with OpenAIServer(responder=lambda r: Reply("answer text\n# Query: next", finish_reason="length")) as server:
        result = _generator(server).generate(
            [GenerationRequest(prompt="p", params=DecodingParams(stop=("# Query:",)))]
        )[0]
    assert result.text == "answer text\n" and result.finish_reason == "stop" and result.logprobs is None
    assert server.requests[0].body["stop"] == ["# Query:"]


def test_length_finish_is_reported():
    with OpenAIServer(responder=lambda r: Reply("cut off", finish_reason="length")) as server:
        assert _generator(server).generate([_chat("x")])[0].finish_reason == "length"


def test_injected_429_500_and_timeouts_are_retried_without_losing_or_duplicating_items():
    def faults(request):
        number = int(request.text.split()[-1])
        if number % 3 == 0 and request.attempt < 2:
            return Fault(status=429, retry_after_ms=20)
        if number % 3 == 1 and request.attempt < 1:
            return Fault(status=500, retry_after_ms=20)
        if number == 5 and request.attempt < 1:
            return Fault(delay=1.5)  # longer than the client's timeout
        return None

    requests = [_chat(f"item {i}") if i % 2 else GenerationRequest(prompt=f"item {i}") for i in range(24)]
    with OpenAIServer(faults=faults) as server:
        generator = _generator(server, timeout=0.5, concurrency=4)
        results = generator.generate(requests)
    assert [r.text for r in results] == [f"echo: item {i}" for i in range(24)]
    attempts = {}
    for request in server.requests:
        attempts[request.text] = attempts.get(request.text, 0) + 1
    assert attempts["item 0"] == 3 and attempts["item 1"] == 2 and attempts["item 5"] == 2 and attempts["item 2"] == 1
    assert generator.calls == 24


def test_backoff_without_a_retry_after_header():
    with OpenAIServer(faults=lambda r: Fault(status=503) if r.attempt == 0 else None) as server:
        assert _generator(server).generate([_chat("slow")])[0].text == "echo: slow"
    assert len(server.requests) == 2


def test_exhausted_retries_fail_clearly_and_finished_items_stay_cached(tmp_path):
    broken = {"down": True}

    def faults(request):
        return Fault(status=500, retry_after_ms=1) if broken["down"] and request.text == "item 3" else None

    requests = [_chat(f"item {i}") for i in range(10)]
    path = tmp_path / "cache.sqlite"
    with OpenAIServer(faults=faults) as server:
        generator = CachedGenerator(_generator(server, concurrency=1, max_retries=2), path)
        with pytest.raises(RtuneError, match="HTTP 500"):
            generator.generate(requests)
        assert len(GenerationCache(path)) == 3  # items 0-2 finished before item 3 failed
        broken["down"] = False
        served_before = len(server.requests)
        resumed = CachedGenerator(_generator(server, concurrency=1), path)
        results = resumed.generate(requests)
        assert len(server.requests) - served_before == 7 and resumed.hits == 3
    assert [r.text for r in results] == [f"echo: item {i}" for i in range(10)]


def test_client_errors_are_not_retried():
    with OpenAIServer(faults=lambda r: Fault(status=400)) as server:
        with pytest.raises(RtuneError, match="HTTP 400"):
            _generator(server).generate([_chat("bad")])
    assert len(server.requests) == 1


def test_api_key_comes_from_the_environment_and_is_never_stored(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RtuneError, match="OPENAI_API_KEY"):
        from_spec("openai:gpt-4o")  # the real OpenAI needs a key
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-secret-value")
    with OpenAIServer() as server:
        generator = from_spec(
            f"openai:judge@{server.base_url}", api_key_env="MY_JUDGE_KEY", cache=tmp_path / "c.sqlite"
        )
        generator.generate([_chat("hi")])
    assert b"sk-secret-value" not in (tmp_path / "c.sqlite").read_bytes()
    with pytest.raises(RtuneError, match="MY_OTHER_KEY"):
        from_spec(f"openai:judge@{server.base_url}", api_key_env="MY_OTHER_KEY")


def test_fingerprint_is_server_and_model():
    with OpenAIServer() as server:
        a = _generator(server).fingerprint
        assert a == from_spec(f"openai:test-model@{server.base_url}/").fingerprint
        assert a != from_spec(f"openai:other-model@{server.base_url}").fingerprint


def test_streaming_chat_and_completion_text():
    with OpenAIServer() as server:
        generator = _generator(server)
        pieces = list(generator.stream_text(_chat("tell me more")))
        raw = "".join(generator.stream_text(GenerationRequest(prompt="go on")))
    assert len(pieces) > 1 and "".join(pieces) == "echo: tell me more"
    assert raw == "echo: go on"
