"""`descentlab explore`: the explorer's page on a local ASGI server (Starlette on uvicorn).

The page (``static/``) asks ``POST api/run`` with one small JSON request per change and draws the
reply (`compute.answer`). Every page the user's browser opens can reach this server, so it
behaves as Jupyter Server does (`Guard`, in front of every route): a request whose Host is not
this machine's own name (localhost, 127.0.0.1, [::1]) is refused with 403 (a page elsewhere,
through DNS rebinding, cannot drive it), ``/api/*`` needs the per-run token the printed address
carries (``?token=`` or ``Authorization: token …``), and only ``application/json`` bodies are
read. A request's body must arrive within `BODY_SECONDS` and hold at most
`request.LIMITS["body"]` bytes; requests run one at a time in a worker thread (the engine is
not shared across threads); a running request stops at its next step when its page leaves, when
a newer request from the same page replaces it, after `DEADLINE` seconds, or at Ctrl-C; the
reply is encoded off the event loop. Requests take turns by arrival plus estimated cost
(`_Turns`), so a drag does not wait long behind a heavy request. Every problem is answered
``{"error": ...}`` with a 4xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import hmac
import ipaddress
import itertools
import json
import logging
import secrets
import signal
import threading
import time
import warnings
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..progress import stop_requested
from . import compute
from .request import LIMITS, cost, default_view, parse
from .request import catalog as offered

STATIC = Path(str(files(__package__) / "static"))
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
BODY_SECONDS = 10.0  # a request's body must arrive within this
DEADLINE = 30.0  # a running request is stopped after this many seconds
log = logging.getLogger("descentlab.explorer")


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """plotly.js as the plotly package ships it (no network)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def new_token() -> str:
    """A fresh token for one run of the server."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8765`` -> ``::1``."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: the Host allow-list and the token, in front of every route."""

    def __init__(self, app, token: str | None, local_only: bool = True):
        self.app, self.token, self.local_only = app, token, local_only

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if self.local_only and not is_loopback(_host_name(host)):
                return await _refuse(
                    send,
                    403,
                    f"blocking a request with non-local Host {host!r}: open this page at "
                    "http://127.0.0.1 (the address descentlab explore printed)",
                )
            if self.token is not None and scope["path"].startswith("/api/"):
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = (query.get("token") or [""])[0]
                auth = headers.get(b"authorization", b"").decode("latin-1")
                if auth.lower().startswith("token "):
                    given = auth[6:].strip()
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    return await _refuse(
                        send,
                        403,
                        "this needs the explorer's token: open the address descentlab explore "
                        "printed (it ends in ?token=...)",
                    )
        await self.app(scope, receive, send)


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Work:
    """One request in flight: its stop flag and why it stopped."""

    def __init__(self):
        self.stop = threading.Event()
        self.why = ""

    def cancel(self, why: str) -> None:
        if not self.stop.is_set():
            self.why = why
            self.stop.set()


_RUNNING: dict[str, Work] = {}  # the request in flight of each page
_ALL: set[Work] = set()  # every request in flight (Ctrl-C stops them all)


def stop_all(why: str) -> None:
    """Stop every request in flight at its next step."""
    for work in list(_ALL):
        work.cancel(why)


def app(defaults: dict | None = None, token: str | None = None, local_only: bool = True):
    """The ASGI application; `defaults` is the view a page without a hash opens on, `token`
    the one ``/api/*`` needs (None: none, for ``--no-token`` on this machine only),
    `local_only` refuses a Host that is not this machine's."""
    start = {**DEFAULTS, **(defaults or {})}

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(plotly_js_path(), media_type="text/javascript")
        path = STATIC / name
        if name not in _SHIPPED or not path.is_file():
            return JSONResponse({"error": f"no file {name!r} here"}, status_code=404)
        return FileResponse(path, media_type=_TYPES[path.suffix])

    async def catalog(request: Request) -> Response:
        return JSONResponse({**offered(), "defaults": start})

    async def run(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return JSONResponse(
                {"error": f"the request must be application/json, not {kind or 'untyped'!r}"},
                status_code=415,
            )
        try:
            body = await asyncio.wait_for(_body(request), BODY_SECONDS)
        except TimeoutError:
            return JSONResponse(
                {"error": f"the request's body did not arrive within {BODY_SECONDS:g} s"},
                status_code=408,
            )
        except ClientDisconnect:
            log.debug("a client left while sending its request")
            return Response(status_code=400)
        if body is None:
            return JSONResponse(
                {"error": f"a request may have at most {LIMITS['body']:,} bytes"},
                status_code=413,
            )
        try:
            asked = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return JSONResponse({"error": "the request is not JSON"}, status_code=400)
        work = Work()
        page = request.headers.get("x-descentlab-page")
        if page:
            previous = _RUNNING.get(page)
            if previous is not None:
                previous.cancel("a newer request from this page replaced it")
            _RUNNING[page] = work
        _ALL.add(work)
        try:
            task = asyncio.ensure_future(run_in_threadpool(_answer, asked, work))
            while not task.done():
                await asyncio.wait({task}, timeout=0.1)
                if not task.done() and await request.is_disconnected():
                    work.cancel("the page that asked left")
            reply, status = task.result()
        except asyncio.CancelledError:  # the server stops (Ctrl-C): nobody reads a reply
            work.cancel("the server is stopping")
            return Response(status_code=503)
        finally:
            _ALL.discard(work)
            if page and _RUNNING.get(page) is work:
                del _RUNNING[page]
        encoded = await run_in_threadpool(_encode, reply)
        del reply
        if len(encoded) > 1_000_000:
            await run_in_threadpool(_give_back_memory)
        return Response(encoded, status_code=status, media_type="application/json")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return Guard(
        Starlette(
            routes=[
                Route("/", index),
                Route("/api/catalog", catalog),
                Route("/api/run", run, methods=["POST"]),
                Route("/{name:str}", static),
            ],
            exception_handlers={HTTPException: http_error},  # 404, 405: JSON too
        ),
        token,
        local_only,
    )


async def _body(request: Request) -> bytes | None:
    """The request's body, or None when it is over the limit."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LIMITS["body"]:
            return None
    return body


class _Turns:
    """Requests run one at a time (the engine is not shared across threads), in the order of
    their arrival plus their estimated seconds; and a running request, at each step of its
    descent (`pause`), lets a waiting request whose turn comes earlier run first: a drag then
    waits for one step of a heavy request, not for all of it, and a heavy one waits at most
    about its own cost for the drags that came after it."""

    def __init__(self):
        self._cond = threading.Condition()
        self._running: tuple[float, int] | None = None
        self._queue: list[tuple[float, int]] = []
        self._seq = itertools.count()

    def _wait_for(self, key) -> None:  # (holding the condition)
        heapq.heappush(self._queue, key)
        while self._running is not None or self._queue[0] != key:
            self._cond.wait()
        heapq.heappop(self._queue)
        self._running = key

    def _leave(self) -> None:  # (holding the condition)
        self._running = None
        self._cond.notify_all()

    @contextlib.contextmanager
    def turn(self, seconds: float):
        key = (time.monotonic() + seconds, next(self._seq))
        with self._cond:
            self._wait_for(key)
        try:
            yield key
        finally:
            with self._cond:
                self._leave()

    def pause(self, key) -> None:
        """Called by the running request between its steps: let an earlier turn go first."""
        if not self._queue or self._queue[0] >= key:  # (a racy peek; the lock decides)
            return
        with self._cond:
            if self._queue and self._queue[0] < key and self._running == key:
                self._leave()
                self._wait_for(key)


_TURNS = _Turns()


def _checked(asked):
    """The request's ``(view, objective)`` and its estimated seconds; (None, 0) for one that
    will be refused (`compute.answer` says why)."""
    try:
        view, objective = parse(asked)
    except Exception:
        return None, 0.0
    return (view, objective), cost(view, objective)


def _answer(asked, work: Work) -> tuple[dict, int]:
    """Answer one request in this worker thread, stopping when `work` says so."""
    timer = threading.Timer(DEADLINE, work.cancel, args=(f"it ran past {DEADLINE:g} s",))
    context = None
    try:
        parsed, seconds = _checked(asked)
        with _TURNS.turn(seconds) as key, warnings.catch_warnings():

            def stop() -> bool:  # asked at each step of the descent
                _TURNS.pause(key)
                return work.stop.is_set()

            context = stop_requested.set(stop)
            # (a note such as "each point runs alone" is for a Python user, not a server log)
            warnings.simplefilter("ignore")
            if work.stop.is_set():
                return {"error": f"not run: {work.why}"}, 409
            timer.start()
            reply = compute.answer(asked, parsed=parsed)
    finally:
        timer.cancel()
        if context is not None:
            stop_requested.reset(context)
    if work.stop.is_set():
        return {"error": f"stopped: {work.why}"}, 409
    return reply, (400 if "error" in reply else 200)


def _encode(reply: dict) -> bytes:
    try:  # (JSON has no nan or infinity; the reply never should hold one)
        return json.dumps(reply, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        message = "the reply held a value that is not finite; try other starts or rates"
        return json.dumps({"error": message}).encode()


def _give_back_memory() -> None:
    """Return freed memory to the system after a large reply (glibc keeps it otherwise, and
    a burst of requests would leave the idle server large)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_SHIPPED = {"explorer.js", "explorer.css", "page.js", "index.html"}
DEFAULTS = default_view()


def url_for(host: str, port: int, token: str | None = None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


HEAD_SECONDS = 10.0  # a connection must send a request's head within this, or it is closed


def _protocol():
    """uvicorn's HTTP protocol, closing a connection that sends no whole request head within
    `HEAD_SECONDS` (an idle one, or one that stalls mid-header), which uvicorn leaves open."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _head_timer = None

        def _waiting(self) -> bool:  # for a request's head: none yet, or the last one answered
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._head_timer is None and self._waiting():
                self._head_timer = self.loop.call_later(HEAD_SECONDS, self._expire)

        def _expire(self) -> None:
            self._head_timer = None
            if self._waiting() and not self.transport.is_closing():
                log.debug("closed a connection that sent no request")
                self.transport.close()

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._waiting() and self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return Protocol


def _server(config):
    """uvicorn's server, stopped at the first Ctrl-C: the requests in flight stop at their next
    step and it does not wait for their connections to close."""
    import uvicorn

    class Server(uvicorn.Server):
        interrupted = False  # stopped by Ctrl-C (SIGINT)

        def handle_exit(self, sig, frame):
            self.interrupted = self.interrupted or sig == signal.SIGINT
            stop_all("the server is stopping")
            self.force_exit = True
            super().handle_exit(sig, frame)

    return Server(config)


def config(defaults: dict | None, host: str, port: int, token: str | None):
    """uvicorn's configuration of the explorer's server (`serve`, and the tests)."""
    import uvicorn

    return uvicorn.Config(
        app(defaults, token, local_only=is_loopback(host)),
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=5,
        http=_protocol(),
        lifespan="off",  # (no startup or shutdown work; a forced exit leaves no task behind)
    )


def serve(
    defaults: dict | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    ready=None,
    token: str | None = None,
) -> None:
    """Run the server until Ctrl-C. `ready(url)` is called once it listens (the CLI prints the
    address and opens the browser there). `token`: the one ``/api/*`` needs (None: none;
    only on this machine's loopback address)."""
    server = _server(config(defaults, host, port, token))
    url = url_for(host, port, token)

    def announce():
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.05)
        if ready is not None:
            ready(url)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    if server.interrupted:  # (uvicorn re-raises the signal it caught only in some versions
        # and timings: a stop by Ctrl-C is a KeyboardInterrupt, always)
        raise KeyboardInterrupt
