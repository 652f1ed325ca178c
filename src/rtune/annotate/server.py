"""The judging page: a small Starlette app over the judgments store, served by uvicorn.

Routes: `/` the page, `/page.js` and `/page.css` its code, `GET /api/state` the item to judge and
the progress, `POST /api/judgments` `{"pair_id", "choice"}` and `POST /api/undo`. The state never
names the generators, and carries the texts as HTML rendered by `rtune.annotate.render` (raw HTML
escaped); the page inserts nothing else.

Local by default: bound to 127.0.0.1 on a random free port, and requests whose Host header is not
a loopback name are refused (no DNS rebinding). Any other `--host` gets a random session token,
printed in the URL; every request for the page or the API must carry it (`?token=` for the page,
the `X-Rtune-Token` header for the API). State-changing requests must be JSON, which a foreign web
page cannot send without a CORS preflight this server never answers.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rtune.annotate.pairs import BlindPair
from rtune.annotate.render import render_markdown
from rtune.annotate.settings import ServerSettings, is_loopback
from rtune.annotate.store import AlreadyJudged, Store
from rtune.errors import RtuneError

TOKEN_HEADER = "X-Rtune-Token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class JudgmentIn(BaseModel):
    pair_id: str
    choice: Literal["left", "right", "tie", "skip"]


def _asset(name: str) -> str:
    return resources.files("rtune.annotate").joinpath(name).read_text(encoding="utf-8")


class AnnotatorView:
    """What the app serves: one annotator's view of the pairs and the store."""

    def __init__(self, settings: ServerSettings, pairs: Sequence[BlindPair], store: Store):
        self.settings, self.pairs, self.store = settings, list(pairs), store
        self.by_id = {pair.id: pair for pair in self.pairs}

    def state(self, **extra) -> dict:
        live = {j.pair_id: j for j in self.store.judgments(self.settings.annotator) if j.pair_id in self.by_id}
        index = next((i for i, pair in enumerate(self.pairs) if pair.id not in live), None)
        item = None
        if index is not None:
            pair = self.pairs[index]
            outputs = {1: pair.output_1, 2: pair.output_2}
            item = {
                "pair_id": pair.id,
                "number": index + 1,
                "instruction": render_markdown(pair.instruction),
                "left": render_markdown(outputs[pair.side_output("left")]),
                "right": render_markdown(outputs[pair.side_output("right")]),
            }
        return {
            "annotator": self.settings.annotator,
            "total": len(self.pairs),
            "done": len(live),
            "skipped": sum(j.choice == "skip" for j in live.values()),
            "can_undo": bool(live),
            "directory": str(self.settings.directory),
            "item": item,
            **extra,
        }


def _host_name(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def create_app(settings: ServerSettings, pairs: Sequence[BlindPair], store: Store | None = None) -> Starlette:
    view = AnnotatorView(settings, pairs, store or Store.in_dir(settings.directory))

    def refuse(request: Request, *, page: bool = False) -> Response | None:
        """A response refusing the request, or None when it may go on."""
        if is_loopback(settings.host) and _host_name(request) not in LOOPBACK_NAMES:
            return PlainTextResponse("this server answers on a loopback address only", 403, headers=SECURITY_HEADERS)
        if settings.token is not None:
            given = request.query_params.get("token", "") if page else request.headers.get(TOKEN_HEADER, "")
            if not secrets.compare_digest(given.encode(), settings.token.encode()):
                message = "missing or wrong session token: open the URL the server printed"
                return (
                    PlainTextResponse(message, 403, headers=SECURITY_HEADERS)
                    if page
                    else JSONResponse({"error": message}, 403, headers=SECURITY_HEADERS)
                )
        return None

    def asset(name: str, media_type: str) -> Callable[[Request], Response]:
        text = _asset(name)

        def endpoint(request: Request) -> Response:
            refused = refuse(request, page=name == "page.html")
            return refused or Response(text, media_type=media_type, headers=SECURITY_HEADERS)

        return endpoint

    def reply(body: dict, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status, headers=SECURITY_HEADERS)

    async def read_json(request: Request) -> dict | Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return reply({"error": "send JSON (Content-Type: application/json)"}, 415)
        try:
            body = await request.json()
        except ValueError:
            return reply({"error": "malformed JSON"}, 400)
        return body if isinstance(body, dict) else reply({"error": "expected a JSON object"}, 400)

    async def state(request: Request) -> Response:
        return refuse(request) or reply(await run_in_threadpool(view.state))

    async def judge(request: Request) -> Response:
        if (refused := refuse(request)) is not None:
            return refused
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        try:
            judgment = JudgmentIn.model_validate(body)
        except ValidationError as exc:
            return reply({"error": exc.errors()[0]["msg"]}, 422)
        pair = view.by_id.get(judgment.pair_id)
        if pair is None:
            return reply({"error": f"no pair {judgment.pair_id!r}"}, 404)
        try:  # SQLite (and its fsync) off the event loop
            await run_in_threadpool(view.store.record, settings.annotator, pair.id, judgment.choice, pair.shown_first)
        except AlreadyJudged as exc:
            return reply({"error": str(exc), "state": await run_in_threadpool(view.state)}, 409)
        return reply(await run_in_threadpool(view.state))

    async def undo(request: Request) -> Response:
        if (refused := refuse(request)) is not None:
            return refused
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        undone = await run_in_threadpool(view.store.undo, settings.annotator)
        return reply(await run_in_threadpool(view.state, undone=undone.pair_id if undone else None))

    return Starlette(
        routes=[
            Route("/", asset("page.html", "text/html; charset=utf-8")),
            Route("/page.js", asset("page.js", "text/javascript; charset=utf-8")),
            Route("/page.css", asset("page.css", "text/css; charset=utf-8")),
            Route("/favicon.ico", lambda request: Response(status_code=204, headers=SECURITY_HEADERS)),
            Route("/api/state", state, methods=["GET"]),
            Route("/api/judgments", judge, methods=["POST"]),
            Route("/api/undo", undo, methods=["POST"]),
        ]
    )


# ------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 takes a free one. Connections queue until the server starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise RtuneError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(64)
    return sock


def page_url(settings: ServerSettings, port: int) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()  # a wildcard address is no place to point a browser at
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/" + (f"?token={settings.token}" if settings.token else "")


def _server(app: Starlette):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def serve(settings: ServerSettings, pairs: Sequence[BlindPair], on_ready: Callable[[str], None] = print) -> None:
    """Serve until interrupted; `on_ready` gets the page's URL once the socket listens."""
    app = create_app(settings, pairs)
    sock = bind(settings.host, settings.port)
    on_ready(page_url(settings, sock.getsockname()[1]))
    try:
        _server(app).run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """The server in a thread of this process, for tests and notebooks: `with BackgroundServer(...) as s: s.url`."""

    def __init__(self, settings: ServerSettings, pairs: Sequence[BlindPair]):
        self.settings, self.pairs = settings, pairs
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self._sock = bind(self.settings.host, self.settings.port)
        self.port = self._sock.getsockname()[1]
        self.url = page_url(self.settings, self.port)
        self._uvicorn = _server(create_app(self.settings, self.pairs))
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
