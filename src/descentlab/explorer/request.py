"""What the explorer's front end may ask for: the limits, a request checked into a `View`
(`parse`), and its cost and reply size estimated before it runs (`cost`, `reply_bytes`), each
problem an `ExploreError` whose one-line message says what to change.

>>> view, objective = parse({"f": "booth", "opt": ["gd"], "steps": 20})
>>> view.entries[0].name, view.steps, objective.name
('gd', 20, 'booth')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .. import defaults
from ..descent import optimizers, schedules
from ..errors import DescentError, UnknownNameError
from ..memory import _ordinal
from ..problem import functions
from ..problem.objective import Objective
from ..problem.resolve import named_or_formula

# what one request may ask for: the page says so, rather than hang
LIMITS = {
    "steps": 5000,
    "points": 64,  # the user's own starts
    "grid": 50,  # per axis
    "optimizers": 8,
    "formula": 400,  # characters
    "work": 4_000_000,  # optimizers x starts x steps
    "body": 65_536,  # bytes of one request
    "seconds": 2.0,  # the work one request may ask for, as `cost` estimates it
    "reply": 8_000_000,  # bytes of one reply, as `reply_bytes` estimates it
}
# `cost`'s model, in seconds, from the eager engine's times on this project's machine
# (benchmarks/results/explorer.md), rounded up: a step's own cost and a point's, each growing
# with the size of f (its tokens); a class run point by point (L-BFGS) pays per point and
# step; Newton's Hessian costs most
_STEP, _STEP_PER_TOKEN, _POINT_PER_TOKEN = 4e-4, 1e-5, 3e-9
_ALONE, _ALONE_PER_TOKEN = 1e-3, 2e-5  # (L-BFGS's first steps search up to 25 points)
_NEWTON, _NEWTON_PER_TOKEN, _NEWTON_POINT_PER_TOKEN = 1e-3, 2.5e-4, 2e-6
# bytes a point's step adds to a reply: path, value, and for the user's own starts the arrows
_ROW_BYTES, _ROW_BYTES_WITH_ARROWS, _SURFACE_BYTES = 16, 60, 100_000
DEFAULT_BOX = ((-5.0, 5.0), (-5.0, 5.0))
# the hyper-parameters the page offers per optimizer (anything else: Python or the CLI)
OFFERED = {
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "rmsprop": {"momentum": 0.0, "alpha": 0.99},
    "adam": {"betas": [0.9, 0.999]},
    "adamw": {"betas": [0.9, 0.999], "weight_decay": 0.01},
    "adamax": {"betas": [0.9, 0.999]},
    "nadam": {"betas": [0.9, 0.999]},
    "radam": {"betas": [0.9, 0.999]},
}
PYTHON = "python"  # the function name of a widget's own callable


class ExploreError(DescentError):
    """A request the explorer does not run; the message says what to change."""


@dataclass(frozen=True)
class Entry:
    name: str
    lr: float
    hyper: dict = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k}={_text(v)}" for k, v in self.hyper.items())
        return f"{self.name} lr={self.lr:g}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class View:
    """One checked request."""

    f: str
    entries: tuple[Entry, ...]
    points: tuple[tuple[float, float], ...]
    grid: int
    steps: int
    box: tuple[tuple[float, float], tuple[float, float]]
    surface: bool = True
    schedule: tuple | None = field(default=None, hash=False)  # (name, settings) for every run
    every: int = 1  # record every k-th step (the page asks so when a reply would be too large)

    @property
    def n_starts(self) -> int:
        return self.grid * self.grid if self.grid else len(self.points)


def default_view() -> dict:
    """The view a page without a hash, `dl.explore()` and `descentlab explore` open on: the
    race `dl.race("himmelblau", defaults.START)` runs, each optimizer at its default rate."""
    names = list(defaults.OPTIMIZERS)
    return {
        "f": "himmelblau",
        "opt": names,
        "lr": [optimizers.REGISTRY[n].lr for n in names],
        "hyper": [{} for _ in names],
        "start": [list(defaults.START)],
        "grid": 0,
        "steps": defaults.STEPS,
        "box": [],
        "schedule": None,
    }


def catalog() -> dict:
    """What the page offers: the functions, the optimizers with their default rate and the
    hyper-parameters it shows, and the limits."""
    return {
        "functions": functions.names(),
        "optimizers": {
            name: {"lr": entry.lr, "hyper": OFFERED.get(name, {}), "summary": entry.summary}
            for name, entry in optimizers.REGISTRY.items()
        },
        "limits": LIMITS,
        "palette": list(defaults.PALETTE),
        "single": defaults.SINGLE,
        # each schedule's settings and their defaults (None: must be given)
        "schedules": {name: dict(settings) for name, settings in schedules.SETTINGS.items()},
    }


def objective_for(f: str, own: Objective | None = None) -> Objective:
    """The objective a request names; `own` is a widget's Python function (f == "python")."""
    if f == PYTHON:
        if own is None:
            raise ExploreError("no Python function here: pick a function or type a formula")
        return own
    if len(f) > LIMITS["formula"]:
        raise ExploreError(
            f"the formula has {len(f)} characters; the explorer takes at most "
            f"{LIMITS['formula']} (descend takes longer ones in Python)"
        )
    obj = named_or_formula(f, None)
    if obj.dim == 1:
        raise ExploreError(
            f"the explorer maps functions of two variables; {f!r} has 1 "
            f"(write it in x and y, e.g. {f} + 0*y)"
        )
    if obj.dim != 2:
        raise ExploreError(
            f"the explorer maps functions of two variables; {f!r} has {obj.dim}: write it in "
            "x and y alone (fix the others at a value), or run it in Python with dl.descend"
        )
    return obj


def parse(request: Mapping, own: Objective | None = None) -> tuple[View, Objective]:
    """Check a request and resolve its function; raises `ExploreError` (or the formula's
    `FormulaError`, or `UnknownNameError`) with a one-line message."""
    if not isinstance(request, Mapping):
        raise ExploreError("a request is a JSON object")
    f = request.get("f", "himmelblau")
    if not isinstance(f, str) or not f.strip():
        raise ExploreError("f must be a function name or a formula")
    objective = objective_for(f.strip(), own)
    names = _list(request, "opt", ["gd"])
    if not names:
        raise ExploreError("choose at least one optimizer")
    if len(names) > LIMITS["optimizers"]:
        raise ExploreError(f"at most {LIMITS['optimizers']} optimizers at once")
    rates = _list(request, "lr", [])
    hypers = _list(request, "hyper", [])
    entries = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ExploreError(f"optimizer {i + 1} must be a name")
        key = optimizers.ALIASES.get(name.strip().lower(), name.strip().lower())
        if key not in optimizers.REGISTRY:
            raise UnknownNameError("optimizer", name, list(optimizers.REGISTRY))
        lr = rates[i] if i < len(rates) and rates[i] is not None else optimizers.REGISTRY[key].lr
        lr = _number(lr, f"the learning rate of {key}")
        if not 0 < lr <= 1e3:
            raise ExploreError(f"the learning rate of {key} must be in (0, 1000], got {lr:g}")
        hyper = hypers[i] if i < len(hypers) and hypers[i] else {}
        if not isinstance(hyper, Mapping):
            raise ExploreError(f"the settings of {key} must be an object of name: value")
        entries.append(Entry(key, lr, _hyper(key, hyper)))
    steps = request.get("steps", 200)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ExploreError(f"steps must be a whole number from 1, got {steps!r}")
    if steps > LIMITS["steps"]:
        raise ExploreError(f"at most {LIMITS['steps']} steps here, got {steps}")
    box = _box(request.get("box"), objective)
    n = request.get("grid") or 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ExploreError(f"grid must be a whole number of starts per axis, got {n!r}")
    if n == 1 or n > LIMITS["grid"]:
        raise ExploreError(f"a grid has 2 to {LIMITS['grid']} starts per axis, got {n}")
    points = () if n else _points(request.get("start"), objective, box)
    schedule = _schedule(request.get("schedule"), steps)
    surface = bool(request.get("surface", 1))
    every = request.get("every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= steps:
        raise ExploreError(
            f"every must be a whole number of steps from 1 to {steps}, got {every!r}"
        )
    view = View(f.strip(), tuple(entries), points, n, steps, box, surface, schedule, every)
    work = len(entries) * view.n_starts * steps
    if work > LIMITS["work"]:
        raise ExploreError(
            f"{len(entries)} optimizers x {view.n_starts} starts x {steps} steps is {work:,} "
            f"point-steps; the explorer runs at most {LIMITS['work']:,} (fewer starts or steps)"
        )
    _check_budget(view, objective)
    return view, objective


def _tokens(objective: Objective) -> int:
    """The size of f: the tokens of its formula (names, numbers, operators), at least 10."""
    text = objective.formula or ""
    return max(10, len(re.findall(r"[A-Za-z_]+|\d+\.?\d*|[-+*/^|()]", text)) or 40)


def cost(view: View, objective: Objective) -> float:
    """The seconds the view's race may take on the eager engine (compiled runs take less)."""
    size, n = _tokens(objective), view.n_starts
    total = 0.0
    for e in view.entries:
        plan = optimizers.resolve(e.name, e.lr, **e.hyper)
        if e.name == "newton":
            per_step = _NEWTON + _NEWTON_PER_TOKEN * size + n * _NEWTON_POINT_PER_TOKEN * size
        elif not plan.batched:  # each point alone, with its own optimizer
            per_step = n * (_ALONE + _ALONE_PER_TOKEN * size)
        else:
            per_step = _STEP + _STEP_PER_TOKEN * size + n * _POINT_PER_TOKEN * size
        total += view.steps * per_step
    return total


def reply_bytes(view: View) -> int:
    """The size the view's reply will have, about."""
    row = _ROW_BYTES if view.grid or view.every > 1 else _ROW_BYTES_WITH_ARROWS
    recorded = view.steps // view.every + 2 if view.every > 1 else view.steps + 1
    rows = len(view.entries) * view.n_starts * recorded
    return rows * row + _SURFACE_BYTES * view.surface


def _check_budget(view: View, objective: Objective) -> None:
    """Refuse, before it runs, a view that would take longer than `LIMITS["seconds"]` or whose
    reply would be larger than `LIMITS["reply"]`, naming the figure and what would fit."""
    if objective.style == "network" or view.f == PYTHON:
        return  # a notebook's own function: its kernel, its time
    seconds, budget = cost(view, objective), LIMITS["seconds"]
    if seconds > budget:
        fewer = max(1, int(view.steps * budget / seconds))
        raise ExploreError(
            f"this asks for about {seconds:.3g} s of work; the explorer runs at most "
            f"{budget:g} s a request: use at most {fewer} steps, fewer starts or another "
            "optimizer (or run it in Python: copy as Python)"
        )
    size, most = reply_bytes(view), LIMITS["reply"]
    if size > most:
        every, now = view.every, size
        while now > most and every < view.steps:  # the smallest k whose reply fits
            every = min(view.steps, max(every + 1, math.ceil(every * now / most)))
            now = reply_bytes(replace(view, every=every))
        fewer = max(1, int(view.steps * most / size))
        error = ExploreError(
            f"the reply would be about {size / 1e6:.0f} MB; the explorer sends at most "
            f"{most / 1e6:g} MB: show every {_ordinal(every)} step, use at most {fewer} steps, "
            "a smaller grid or fewer optimizers"
        )
        error.every = every  # the page asks again for every k-th step
        raise error


# --- checks ------------------------------------------------------------------------------


def _schedule(given, steps: int) -> tuple | None:
    """The request's schedule, ``{"name": "cosine", "warmup": 5}`` or a name, as (name,
    settings), checked (`schedules.resolve`'s one-line errors)."""
    if given is None or given == "" or given == {}:
        return None
    if not isinstance(given, str | Mapping) or not isinstance(
        given if isinstance(given, str) else given.get("name"), str
    ):
        raise ExploreError('a schedule is {"name": "cosine", ...settings} or a name')
    name, settings = schedules.named(given)
    name = name.strip()
    if name in ("", "none"):
        return None
    for key, value in settings.items():  # numbers, or lists of them (multistep's milestones)
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ExploreError(f"the schedule's {key} must be a number, got {value!r}")
        if isinstance(value, list):
            settings[key] = tuple(value)
    schedules.resolve((name, settings), steps)
    return (name, settings)


def _list(request: Mapping, key: str, default: list) -> list:
    value = request.get(key, default)
    if value is None:
        return default
    if not isinstance(value, list | tuple):
        raise ExploreError(f"{key} must be a list")
    return list(value)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExploreError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ExploreError(f"{what} must be finite, got {value}")
    return value


def _hyper(name: str, hyper: Mapping) -> dict:
    offered = OFFERED.get(name, {})
    out = {}
    for key, value in hyper.items():
        if key not in offered:
            choices = ", ".join(offered) or "none"
            raise ExploreError(f"{name} takes no setting {key!r} here (offered: {choices})")
        if key == "betas":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ExploreError(f"betas of {name} must be two numbers, got {value!r}")
            b = tuple(_number(v, f"a beta of {name}") for v in value)
            if not all(0 <= v < 1 for v in b):
                raise ExploreError(f"betas of {name} must be in [0, 1), got {b}")
            value = b
        else:
            value = _number(value, f"{key} of {name}")
            top = 1 if key in ("momentum", "alpha") else 10
            if not 0 <= value < top:
                raise ExploreError(f"{key} of {name} must be in [0, {top}), got {value:g}")
        if value != (tuple(offered[key]) if key == "betas" else offered[key]):
            out[key] = value  # only what differs from the optimizer's default
    return out


def _box(box, objective: Objective) -> tuple:
    if box is None or (isinstance(box, list | tuple) and not box):
        default = objective.view or objective.domain or DEFAULT_BOX
        return tuple((float(lo), float(hi)) for lo, hi in default)
    flat = box if isinstance(box, list | tuple) else None
    if flat is not None and len(flat) == 2 and all(isinstance(b, list | tuple) for b in flat):
        flat = [*flat[0], *flat[1]]
    if flat is None or len(flat) != 4:
        raise ExploreError("box must be four numbers: x_lo, x_hi, y_lo, y_hi")
    x0, x1, y0, y1 = (_number(v, "the box") for v in flat)
    if not (x0 < x1 and y0 < y1) or max(abs(x0), abs(x1), abs(y0), abs(y1)) > 1e6:
        raise ExploreError(f"box must have lo < hi on both axes within ±1e6, got {flat}")
    return ((x0, x1), (y0, y1))


def _points(start, objective: Objective, box) -> tuple:
    if start is None or (isinstance(start, list | tuple) and not start):
        # off-centre, where the classic functions' centres are often a minimum or a saddle
        (x0, x1), (y0, y1) = box
        return ((round(x0 + 0.42 * (x1 - x0), 4), round(y0 + 0.37 * (y1 - y0), 4)),)
    if not isinstance(start, list | tuple):
        raise ExploreError("start must be a list of [x, y] points")
    if len(start) > LIMITS["points"]:
        raise ExploreError(
            f"{len(start)} starts; at most {LIMITS['points']} points (use a grid for more)"
        )
    points = []
    for p in start:
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise ExploreError(f"a start must be [x, y], got {p!r}")
        x, y = (_number(v, "a start's coordinate") for v in p)
        if max(abs(x), abs(y)) > 1e6:
            raise ExploreError(f"a start must be within ±1e6, got {p!r}")
        points.append((x, y))
    return tuple(points)


def _text(v) -> str:
    if isinstance(v, tuple | list):
        inner = ",".join(_text(x) for x in v)
        return f"({inner})"
    return f"{v:g}" if isinstance(v, float) else str(v)
