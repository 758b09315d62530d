"""`descentlab explore [FUNC]`: the live explorer on a local server (`explore.server`)."""

from __future__ import annotations

import errno
import socket

import typer

from ..errors import DescentError


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def register(app: typer.Typer, friendly, out) -> None:
    @app.command("explore")
    @friendly
    def explore_command(
        function: str = typer.Argument("himmelblau", help="a function name or a formula in x, y"),
        optimizers: str = typer.Option("gd,momentum,rmsprop,adam", help="comma-separated names"),
        lr: str = typer.Option(None, help="learning rate for all, or one each: 0.01,0.05"),
        start: str = typer.Option(None, help="start point x,y (several: 'x,y;x,y')"),
        steps: int = typer.Option(200, help="steps per walk"),
        host: str = typer.Option("127.0.0.1", help="address to listen on (this machine only)"),
        port: int = typer.Option(8765, help="port to listen on"),
        browser: bool = typer.Option(True, "--browser/--no-browser", help="open a browser"),
    ) -> None:
        """The live explorer in your browser: click starts, drag them, slide the rates."""
        from ..explorer import compute, server
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
        if not _port_free(host, port):
            raise DescentError(f"port {port} on {host} is in use; give another with --port")
        out.print(f"descentlab explorer on {server.url_for(host, port)} (Ctrl-C stops it)")
        server.serve(view, host=host, port=port, open_browser=browser)
