"""`descentlab explore`: the explorer's page on a local ASGI server (Starlette on uvicorn).

The page (``static/``) asks ``POST api/run`` with one small JSON request per change and draws the
reply (`compute.answer`). The server binds 127.0.0.1 unless told otherwise, reads at most
`compute.LIMITS["body"]` bytes of a request, runs one request at a time in a worker thread
(the engine is not shared across threads) and answers every problem as ``{"error": ...}``: a
bad request never stops it.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from . import compute

STATIC = Path(str(files(__package__) / "static"))
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """plotly.js as the plotly package ships it (no network)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def app(defaults: dict | None = None) -> Starlette:
    """The ASGI application; `defaults` is the view a page without a hash opens on."""
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
        return JSONResponse({**compute.catalog(), "defaults": start})

    async def run(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > compute.LIMITS["body"]:
                return JSONResponse(
                    {"error": f"a request may have at most {compute.LIMITS['body']:,} bytes"},
                    status_code=413,
                )
        try:
            asked = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "the request is not JSON"}, status_code=400)
        reply = await run_in_threadpool(_answer, asked)
        return JSONResponse(reply, status_code=400 if "error" in reply else 200)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/catalog", catalog),
            Route("/api/run", run, methods=["POST"]),
            Route("/{name:str}", static),
        ]
    )


def _answer(asked) -> dict:
    with _LOCK:
        return compute.answer(asked)


_SHIPPED = {"explorer.js", "explorer.css", "page.js", "index.html"}
DEFAULTS = {
    "f": "himmelblau",
    "opt": ["gd", "momentum", "rmsprop", "adam"],
    "lr": [0.01, 0.01, 0.01, 0.05],
    "hyper": [{}, {}, {}, {}],
    "start": [[-0.4, -0.65]],
    "grid": 0,
    "steps": 200,
    "box": [],
    "schedule": None,
}


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}/"


def serve(
    defaults: dict | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    ready=None,
) -> None:
    """Run the server until Ctrl-C. `ready(url)` is called once it listens (the CLI prints the
    address and opens the browser there)."""
    import uvicorn

    config = uvicorn.Config(app(defaults), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    url = url_for(host, port)

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
