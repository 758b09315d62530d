"""`descentlab explore [FUNC]`: the live explorer on a local server (`explore.server`)."""

from __future__ import annotations

import errno
import socket

import typer

from .. import defaults
from ..errors import DescentError


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # as uvicorn binds: a port whose last connections are still closing (TIME_WAIT) is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def register(app: typer.Typer, friendly, out, err) -> None:
    @app.command("explore")
    @friendly
    def explore_command(
        function: str = typer.Argument("himmelblau", help="a function name or a formula in x, y"),
        optimizers: str = typer.Option(",".join(defaults.OPTIMIZERS), help="comma-separated names"),
        lr: str = typer.Option(None, help="learning rate for all, or one each: 0.01,0.05"),
        start: str = typer.Option(None, help="start point x,y (several: 'x,y;x,y')"),
        steps: int = typer.Option(defaults.STEPS, help="steps per walk"),
        host: str = typer.Option(
            "127.0.0.1",
            help="address to listen on: 127.0.0.1 is this machine only; any other address lets "
            "the network reach the explorer (it then needs its token, and says so)",
        ),
        port: int = typer.Option(8765, help="port to listen on"),
        browser: bool = typer.Option(True, "--browser/--no-browser", help="open a browser"),
        token: str = typer.Option(
            None, help="the token /api/* needs (default: a new random one each run)"
        ),
        budget: float = typer.Option(
            None,
            help="seconds of work one request may ask for, as estimated before it runs "
            "(default 2); more lets a page hold the server longer",
        ),
        no_token: bool = typer.Option(
            False,
            "--no-token",
            help="no token (on 127.0.0.1 only: any page you open can then use the explorer)",
        ),
    ) -> None:
        """The live explorer in your browser: click starts, drag them, slide the rates.

        The address it prints carries a token that the page sends with every request, as
        Jupyter's does; a request from a page of another site is refused."""
        from ..explorer import compute, request, server
        from .app import _parse_points, _rates

        names = [n.strip() for n in optimizers.split(",") if n.strip()]
        rates = [None] * len(names) if lr is None else _rates(lr, len(names))
        points = []
        if start is not None:
            parsed = _parse_points(start)
            points = [list(parsed)] if not isinstance(parsed, list) else [list(p) for p in parsed]
        view = {
            "f": function,
            "opt": names,
            "lr": rates,
            "hyper": [{} for _ in names],
            "start": points,
            "grid": 0,
            "steps": steps,
            "box": [],
        }
        reply = compute.answer({**view, "surface": 0})  # a bad view is said here, not in a page
        if "error" in reply:
            raise DescentError(reply["error"])
        if not 0 < port < 65536:
            raise DescentError(f"--port must be from 1 to 65535, got {port}")
        if budget is not None:
            if not 0 < budget <= 3600:
                raise DescentError(f"--budget must be in (0, 3600] seconds, got {budget:g}")
            request.LIMITS["seconds"] = budget
            server.DEADLINE = max(server.DEADLINE, 3 * budget)
        local = server.is_loopback(host)
        if no_token and not local:
            raise DescentError(
                f"--no-token is for 127.0.0.1 only: on {host} the network can reach the explorer; "
                "keep the token"
            )
        if token is not None and (len(token) < 8 or not token.isprintable() or " " in token):
            raise DescentError("--token must be at least 8 printable characters without spaces")
        if not _port_free(host, port):
            raise DescentError(f"port {port} on {host} is in use; give another with --port")
        secret = None if no_token else (token or server.new_token())
        if not local:
            err.print(
                f"warning: listening on {host}: other machines on the network can reach the "
                "explorer; only the address below, with its token, lets them use it"
            )
        url = server.url_for(host, port, secret)
        out.print(f"descentlab explorer on {url} (Ctrl-C stops it)", soft_wrap=True)
        try:
            server.serve(view, host=host, port=port, open_browser=browser, token=secret)
        except KeyboardInterrupt:
            err.print("descentlab explorer stopped")
            raise typer.Exit(130) from None
