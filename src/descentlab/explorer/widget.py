"""`dl.explore(...)` in a notebook: the explorer as an anywidget (JupyterLab, Notebook 7, VS
Code, marimo). The same front end as `descentlab explore`; its state lives in the widget's
traits (so a saved notebook keeps the view), and each request is a custom message answered by
`compute.answer` in the kernel, where a Python function of the user's may be explored too."""

from __future__ import annotations

import sys

import anywidget
import traitlets

from .. import defaults
from ..problem.objective import Objective
from ..problem.resolve import resolve
from ..progress import in_a_notebook
from . import compute
from .request import PYTHON, ExploreError, catalog, default_view, parse
from .server import STATIC, plotly_js_path

_VIEW = default_view()


class Explorer(anywidget.AnyWidget):
    """The live explorer. Its view is in the traits (`f`, `opt`, `lr`, `hyper`, `start`,
    `grid`, `steps`, `box`, `schedule`); `race()` runs it in Python and returns the `Race` on
    screen."""

    _esm = STATIC / "explorer.js"
    _css = STATIC / "explorer.css"
    f = traitlets.Unicode(_VIEW["f"]).tag(sync=True)
    opt = traitlets.List(_VIEW["opt"]).tag(sync=True)
    lr = traitlets.List(_VIEW["lr"]).tag(sync=True)
    hyper = traitlets.List(_VIEW["hyper"]).tag(sync=True)
    start = traitlets.List([]).tag(sync=True)
    grid = traitlets.Int(_VIEW["grid"]).tag(sync=True)
    steps = traitlets.Int(_VIEW["steps"]).tag(sync=True)
    box = traitlets.List([]).tag(sync=True)
    # a learning-rate schedule for every walk: {"name": "cosine", "warmup": 5}, or None
    schedule = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    catalog = traitlets.Dict().tag(sync=True)

    def __init__(self, own: Objective | None = None, **state):
        super().__init__(catalog=catalog(), **state)
        self._own = own
        self.last_reply: dict | None = None
        self.on_msg(self._on_message)

    def serve(self, port: int | None = None, browser: bool = True) -> None:
        """This view on the local server `descentlab explore` runs (port: a free one), in your
        browser, until Ctrl-C: for a script or a terminal, where no widget shows. A Python
        function stays in a notebook's kernel: outside one, give a name or a formula."""
        _serve(self, self._own, port, browser)

    def request(self) -> dict:
        """The request the front end sends for the current view."""
        return {
            "f": self.f,
            "opt": list(self.opt),
            "lr": list(self.lr),
            "hyper": list(self.hyper),
            "start": list(self.start) or None,
            "grid": self.grid,
            "steps": self.steps,
            "box": list(self.box) or None,
            "schedule": dict(self.schedule) if self.schedule else None,
        }

    def race(self):
        """The `Race` on screen, run in Python (the same numbers the page shows)."""
        return compute.race_of(*parse(self.request(), self._own))

    def _on_message(self, widget, content, buffers) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "plotly":
            self.send({"type": "plotly", "source": plotly_js_path().read_text()})
        elif content.get("type") == "run":
            reply = compute.answer(content.get("request") or {}, self._own)
            self.last_reply = reply
            self.send({"type": "result", "id": content.get("id"), "reply": reply})


def explore(
    f="himmelblau",
    optimizers=defaults.OPTIMIZERS,
    lr=None,
    start=None,
    steps: int = defaults.STEPS,
    grid: int = 0,
    bounds=None,
    schedule=None,
) -> Explorer:
    """The live explorer in a notebook.

    Args:
        f: a registered name, a formula in x and y, a Python function of two variables
            (which stays in your kernel; the page shows it as "your Python function"), or a
            network's `Landscape` (optimizers race on its loss restricted to the plane,
            from where its training began).
        optimizers: names (any of `dl.optimizers`); ``(name, {settings})`` pairs for
            momentum or betas.
        lr: one rate for all, or one per optimizer (None: each one's default).
        start: a point (x, y) or a list of points; None: one start chosen in the view.
        steps: steps per walk.
        grid: instead of points, an n x n grid of starts over the view.
        bounds: the view, ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``.
        schedule: a learning-rate schedule for every walk: a name (``"cosine"``) or
            ``(name, settings)`` (``("cosine", {"warmup": 5})``); each lr is its base rate.

    Example:
        >>> w = explore("himmelblau", ["gd", "adam"], lr=[0.01, 0.05], start=(-0.4, -0.65))
        >>> w.race()["adam lr=0.05"].steps
        200
    """
    names, hypers = [], []
    for entry in [optimizers] if isinstance(optimizers, str) else optimizers:
        name, hyper = entry if isinstance(entry, tuple) else (entry, {})
        names.append(name)
        hypers.append(dict(hyper))
    rates = list(lr) if isinstance(lr, list | tuple) else [lr] * len(names)
    own = None
    if callable(f) and not isinstance(f, str):
        own = f if isinstance(f, Objective) else resolve(f, (0.0, 0.0)).objective
        if own.dim != 2:
            raise ExploreError(
                f"the explorer maps functions of two variables; this one has {own.dim}"
            )
        f = PYTHON
        if start is None and getattr(own, "start", None) is not None:
            start = own.start  # a network's plane: where its training began
    points = []
    if start is not None:
        points = (
            [list(start)] if not isinstance(start[0], list | tuple) else [list(p) for p in start]
        )
    box = []
    if bounds is not None:
        b = bounds if isinstance(bounds[0], list | tuple) else (bounds, bounds)
        box = [float(b[0][0]), float(b[0][1]), float(b[1][0]), float(b[1][1])]
    if isinstance(schedule, str):
        schedule = {"name": schedule}
    elif isinstance(schedule, tuple):
        schedule = {"name": schedule[0], **dict(schedule[1])}
    widget = Explorer(
        own,
        f=f,
        opt=names,
        lr=rates,
        hyper=hypers,
        start=points,
        steps=steps,
        grid=grid,
        box=box,
        schedule=schedule,
    )
    parse(widget.request(), own)  # a bad argument is said here, not in the page
    if not in_a_notebook():
        if own is not None:
            print(
                "dl.explore shows a Python function in a notebook, where the widget keeps it in "
                "your kernel; outside one, give a registered name or a formula",
                file=sys.stderr,
            )
        elif sys.stdout.isatty():  # a person at a terminal: show it them
            widget.serve()
        else:
            print(
                "dl.explore shows itself in a notebook; here, call .serve() on it (or run "
                "`descentlab explore` in a terminal) to open it in your browser",
                file=sys.stderr,
            )
    return widget


def _serve(widget: Explorer, own, port: int | None, browser: bool) -> None:
    import socket

    from .server import new_token, serve, url_for

    if own is not None:
        raise ExploreError(
            "a Python function is explored in a notebook (the widget keeps it in your kernel); "
            "outside one, give a registered name or a formula, or run "
            "descentlab explore 'formula'"
        )
    if port is None:
        with socket.socket() as s:  # a free port of this machine
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    token = new_token()
    view = {k: v for k, v in widget.request().items() if v is not None}
    print(
        f"descentlab explorer on {url_for('127.0.0.1', port, token)} (Ctrl-C stops it)",
        flush=True,
    )
    try:
        serve(view, port=port, token=token, open_browser=browser)
    except KeyboardInterrupt:
        print("descentlab explorer stopped", flush=True)
