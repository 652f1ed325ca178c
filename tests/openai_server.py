"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with a scriptable responder and injectable faults.

    with OpenAIServer(responder=lambda request: Reply("hi")) as server:
        generator = from_spec(f"openai:test-model@{server.base_url}")

Speaks POST /v1/chat/completions and /v1/completions (logprobs, top_logprobs, stop, stream=True).
`responder(request)` maps a `ServedRequest` to a `Reply` (or a plain string); `faults(request)`
returns a `Fault` to fail this attempt (HTTP status, a delay longer than the client's timeout, or a
200 whose body is anything you like: not JSON, cut short, no choices).
Each request's `attempt` counts earlier requests with the same text, so "fail the first two
attempts" is `lambda r: Fault(status=429) if r.attempt < 2 else None`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ServedRequest:
    endpoint: str  # "chat" or "completions"
    body: dict
    text: str  # the prompt, or the last message's content
    attempt: int  # earlier requests with the same endpoint and text
    answered: bool = False  # a reply (not a fault) was sent


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"
    # per token: (token, logprob, {alternative: logprob}); default: one token per word, logprob -0.1
    tokens: list[tuple[str, float, dict[str, float]]] | None = None
    logprobs: bool = True  # False: ignore a request for log-probabilities, as some servers do


@dataclass
class Fault:
    status: int | None = None  # answer with this HTTP error
    delay: float = 0.0  # sleep this long first (longer than the client's timeout = a timeout)
    retry_after_ms: int | None = None  # ask the client to wait this long before retrying
    body: str | None = None  # answer HTTP 200 with exactly this body (Content-Type: application/json)


def echo(request: ServedRequest) -> Reply:
    return Reply(f"echo: {request.text}")


def _default_tokens(text: str) -> list[tuple[str, float, dict[str, float]]]:
    words = [word + " " for word in text.split(" ")]
    words[-1] = words[-1][:-1]
    return [(word, -0.1, {word: -0.1, "<alt>": -2.5, "<alt2>": -4.0}) for word in words if word]


@dataclass
class OpenAIServer:
    responder: Callable[[ServedRequest], Reply | str] = echo
    faults: Callable[[ServedRequest], Fault | None] = lambda request: None
    requests: list[ServedRequest] = field(default_factory=list)  # every attempt, in arrival order

    def __post_init__(self):
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], int] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _register(self, endpoint: str, body: dict) -> ServedRequest:
        text = body["messages"][-1]["content"] if endpoint == "chat" else body["prompt"]
        with self._lock:
            attempt = self._seen.get((endpoint, text), 0)
            self._seen[(endpoint, text)] = attempt + 1
            request = ServedRequest(endpoint, body, text, attempt)
            self.requests.append(request)
        return request


def _cut_at_stop(text: str, stop) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _response_body(request: ServedRequest, reply: Reply) -> dict:
    body = request.body
    text, stopped = _cut_at_stop(reply.text, body.get("stop"))
    tokens = reply.tokens if reply.tokens is not None else _default_tokens(text)
    finish = "stop" if stopped else reply.finish_reason
    usage = {
        "prompt_tokens": len(request.text.split()),
        "completion_tokens": len(tokens),
        "total_tokens": len(request.text.split()) + len(tokens),
    }
    base = {"id": f"cmpl-{id(request)}", "created": int(time.time()), "model": body.get("model", ""), "usage": usage}
    if request.endpoint == "chat":
        logprobs = None
        if body.get("logprobs") and reply.logprobs:
            k = body.get("top_logprobs") or 0
            logprobs = {
                "content": [
                    {
                        "token": t,
                        "logprob": lp,
                        "bytes": list(t.encode()),
                        "top_logprobs": [
                            {"token": a, "logprob": v, "bytes": list(a.encode())} for a, v in list(top.items())[:k]
                        ],
                    }
                    for t, lp, top in tokens
                ]
            }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": logprobs,
        }
        return {**base, "object": "chat.completion", "choices": [choice]}
    logprobs = None
    if body.get("logprobs") and reply.logprobs:
        k = body["logprobs"]
        logprobs = {
            "tokens": [t for t, _, _ in tokens],
            "token_logprobs": [lp for _, lp, _ in tokens],
            "top_logprobs": [dict(list(top.items())[:k]) for _, _, top in tokens],
            "text_offset": [],
        }
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}
    return {**base, "object": "text_completion", "choices": [choice]}


def _stream_chunks(request: ServedRequest, reply: Reply):
    text, _ = _cut_at_stop(reply.text, request.body.get("stop"))
    pieces = [word for word, _, _ in _default_tokens(text)]
    for piece in pieces:
        if request.endpoint == "chat":
            yield {
                "id": "s",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
        else:
            yield {
                "id": "s",
                "object": "text_completion",
                "created": 0,
                "model": "",
                "choices": [{"index": 0, "text": piece, "finish_reason": None}],
            }


def _handler_for(server: OpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send_json(self, status: int, payload: dict | str, headers: dict | None = None) -> None:
            blob = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(blob)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(blob)

        def do_POST(self) -> None:
            endpoints = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path not in endpoints:
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            request = server._register(endpoints[self.path], body)
            fault = server.faults(request)
            try:
                if fault is not None:
                    time.sleep(fault.delay)
                    if fault.status is not None:
                        headers = (
                            {"retry-after-ms": str(fault.retry_after_ms)} if fault.retry_after_ms is not None else {}
                        )
                        self._send_json(
                            fault.status,
                            {"error": {"message": f"injected {fault.status}", "type": "injected"}},
                            headers,
                        )
                        return
                    if fault.body is not None:
                        self._send_json(200, fault.body)
                        return
                reply = server.responder(request)
                reply = Reply(reply) if isinstance(reply, str) else reply
                if body.get("stream"):
                    self._stream(request, reply)
                else:
                    self._send_json(200, _response_body(request, reply))
                request.answered = True
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout); it will retry

        def _stream(self, request: ServedRequest, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in _stream_chunks(request, reply):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler
