"""What the explorer's front end asks for, checked, run and answered as JSON.

A request is small: a function (registered name or formula), the optimizers with their learning
rates and hyper-parameters, the starts (points, or a grid over the view), the steps. `answer`
checks it against `LIMITS`, runs `race` on the engine and returns, per optimizer, every walk's
path and values and, for the user's own starts (not a grid's), per step: the gradient, the
update taken and the optimizer state worth drawing (`glyphs`). Arrays travel as base64 float32
(`pack`). Any problem comes back as ``{"error": message}`` (with the formula's ``column``), never
as an exception: the page shows it and keeps working.

>>> reply = answer({"f": "booth", "opt": ["gd"], "lr": [0.05], "start": [[0, 0]], "steps": 20})
>>> reply["runs"][0]["status"], reply["runs"][0]["steps"]
(['running'], [20])
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..descent import optimizers, schedules
from ..descent.race import race
from ..errors import DescentError, UnknownNameError
from ..memory import _ordinal
from ..problem import functions
from ..problem.objective import Objective
from ..problem.resolve import named_or_formula
from ..problem.starts import grid as make_grid
from ..status import STATUS

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
SURFACE = 121  # samples per axis of the contour map
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
    if obj.dim != 2:
        raise ExploreError(
            f"the explorer maps functions of two variables; {f!r} has {obj.dim} "
            f"(write it in x and y, e.g. {f} + 0*y)"
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


def answer(request: Mapping, own: Objective | None = None) -> dict:
    """The reply to one request: ``{"f": ..., "runs": [...], "python": ..., "cli": ...}``, or
    ``{"error": message}``."""
    began = time.perf_counter()
    try:
        view, objective = parse(request, own)
        reply = run(view, objective)
    except DescentError as exc:
        message = str(exc).strip().splitlines()[0]
        reply = {"error": message}
        if getattr(exc, "every", None):
            reply["every"] = exc.every
        found = re.search(r"at column (\d+)", message)
        if found:
            reply["column"] = int(found.group(1))
    except Exception as exc:  # a torch or numpy refusal, or a case no check foresaw
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reply = {"error": f"{type(exc).__name__}: {text}".rstrip(": ")}
    reply["ms"] = round((time.perf_counter() - began) * 1e3, 2)
    return reply


def run(view: View, objective: Objective) -> dict:
    """Race the view's optimizers from its starts and pack what the page draws."""
    _check_finite_starts(view, objective)
    warm(objective, view)
    result = race_of(view, objective)
    runs = []
    for entry, (_, trajectory) in zip(view.entries, result, strict=True):
        glyphs = not view.grid and view.every == 1  # (arrows need every step)
        runs.append(_pack_run(entry, trajectory, objective, glyphs=glyphs))
    reply = {"f": _describe(view, objective), "runs": runs, "python": python_code(view)}
    reply["cli"] = cli_code(view) if view.f != PYTHON else None
    return reply


def _check_finite_starts(view: View, objective: Objective) -> None:
    """The user's own starts must be where f is defined (a grid may cross where it is not:
    those walks are diverged at step 0)."""
    if view.grid or not view.points:
        return
    with torch.no_grad():
        values = objective(torch.tensor(view.points, dtype=torch.float32))
    for (x, y), value in zip(view.points, values.tolist(), strict=True):
        if not math.isfinite(value):
            raise ExploreError(
                f"f is not finite at the start ({x:g}, {y:g}) (f = {value}); choose a start "
                "where f is defined"
            )


def race_of(view: View, objective: Objective):
    """The view's `Race`, labelled as the copied Python labels it (`entrants`)."""
    entries, rates = entrants(view)
    return race(
        objective,
        _starts(view),
        optimizers=entries,
        lr=rates,
        steps=view.steps,
        schedule=view.schedule,
        record=view.every if view.every > 1 else "all",
    )


def entrants(view: View) -> tuple[dict, dict]:
    """label -> name or (name, settings), and label -> rate; a repeated label numbered."""
    entries, rates = {}, {}
    for e in view.entries:
        label = _unique(e.label, entries)
        entries[label] = (e.name, dict(e.hyper)) if e.hyper else e.name
        rates[label] = e.lr
    return entries, rates


def warm(objective: Objective, view: View) -> None:
    """Build the C loops of this view's optimizers now (once per function and optimizer kind,
    then on disk), so that `auto` runs every later drag on them rather than eagerly."""
    from .. import engine
    from ..descent.loop import Settings

    factory = schedules.resolve(view.schedule, view.steps)
    specs = []
    for e in view.entries:
        plan = optimizers.resolve(e.name, e.lr, **e.hyper)
        rates = None
        if factory is not None and e.name in engine.SUPPORTED:
            rates = schedules.planned(factory, plan, view.steps)
        settings = Settings(view.steps, None, math.inf, 1e30, 1, None, factory, rates)
        if engine.unsupported(objective, plan, "autograd", settings) is None:
            specs.append(engine.Spec.of(objective, plan, 2, torch.float32, "cpu", settings))
    engine.prebuild(specs)
    for spec in specs:  # loaded now, so `auto` runs them: a drag is too short to repay a load
        engine.c_kernel(spec)


# --- the reply ---------------------------------------------------------------------------


def pack(a) -> dict:
    """An array as ``{"shape": [...], "b64": ...}`` of little-endian float32."""
    a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack(d: Mapping) -> np.ndarray:
    """`pack`'s inverse."""
    return np.frombuffer(base64.b64decode(d["b64"]), dtype="<f4").reshape(d["shape"])


def _describe(view: View, objective: Objective) -> dict:
    out = {
        "key": f"{view.f}|{view.box}",
        "name": objective.name,
        "formula": objective.formula or view.f,
        "box": [list(b) for b in view.box],
        "minima": [list(m) for m in objective.minima],
        "fmin": objective.minimum_value,
    }
    if view.surface:
        xs, ys, z = objective.surface(view.box, SURFACE)
        out["surface"] = {"x": xs.tolist(), "y": ys.tolist(), "z": pack(z)}
    return out


def _pack_run(entry: Entry, run, objective: Objective, glyphs: bool) -> dict:
    path = np.asarray(run.path)  # (T, N, 2)
    values = np.asarray(run.values)  # (T, N)
    diverging = np.atleast_1d(run.diverging)
    status = [
        "diverging" if away else STATUS[int(c)]
        for c, away in zip(np.atleast_1d(run.status_), diverging, strict=True)
    ]
    out = {
        "label": entry.label,
        "name": entry.name,
        "lr": entry.lr,
        "hyper": entry.hyper,
        "kernel": run.meta.get("kernel") or run.meta.get("engine"),
        "path": pack(path),
        "values": pack(values),
        "status": status,
        "steps": [int(s) for s in np.atleast_1d(run.steps_)],
        # (JSON has no nan or infinity: a walk whose value is not finite has none)
        "final": [float(v) if math.isfinite(v) else None for v in np.atleast_1d(run.value_)],
    }
    rates = np.asarray(run.rates, dtype=np.float64) if run.meta.get("rates") else None
    recorded = np.asarray(run.recorded)
    if len(recorded) != run.iterations + 1:  # every k-th step: the page counts rows
        taken = np.atleast_1d(run.steps_)
        out["recorded"] = [int(k) for k in recorded]
        out["taken"] = out["steps"]
        out["steps"] = [int(r) for r in np.searchsorted(recorded, taken)]
        if rates is not None:
            rates = rates[np.minimum(recorded, len(rates) - 1)] if len(rates) else rates
    if rates is not None:
        out["rates"] = [float(r) if math.isfinite(r) else None for r in rates]
    if glyphs:
        out["glyphs"] = glyphs_of(entry, path, objective, rates)
    return out


def glyphs_of(
    entry: Entry, path: np.ndarray, objective: Objective, rates: np.ndarray | None = None
) -> dict:
    """Per step t and start: the gradient g_t at x_t, the update x_{t+1} - x_t, and, for the
    optimizers whose state has a picture, that state after step t, rebuilt from the gradients
    with torch.optim's formulas in double precision. Arrows are in the map's units: ``-lr g``
    (the step plain gradient descent would take) and the state's share of the update; lr is
    step t's (`rates`, a schedule's) or the entry's."""
    T, n, d = path.shape
    x = torch.as_tensor(path.reshape(T * n, d), dtype=torch.float64).requires_grad_(True)
    (g,) = torch.autograd.grad(objective(x).sum(), x)
    g = g.detach().numpy().reshape(T, n, d)
    update = np.zeros_like(path, dtype=np.float64)
    update[:-1] = path[1:] - path[:-1]
    lr = np.full((T, 1, 1), entry.lr)
    if rates is not None and len(rates):  # step t's rate; past the last step, the last
        lr[:, 0, 0] = rates[np.minimum(np.arange(T), len(rates) - 1)]
    h = {**optimizers.REGISTRY[entry.name].defaults, **entry.hyper}
    arrows = {"gradient": -lr * g, "update": update}
    readouts = {}
    name = entry.name
    if name in ("momentum", "nesterov") or (name == "gd" and h.get("momentum")):
        mu = float(h.get("momentum", 0.0))
        buf, carried = np.zeros((n, d)), np.zeros((T, n, d))
        for t in range(T):
            carried[t] = -lr[t] * mu * buf  # what momentum adds to this step
            buf = mu * buf + g[t]
        arrows["momentum"] = carried
    elif name in ("adam", "adamw", "adamax", "nadam", "radam"):
        b1, b2 = (float(b) for b in h.get("betas", (0.9, 0.999)))
        m, v = np.zeros((n, d)), np.zeros((n, d))
        first, second = np.zeros((T, n, d)), np.zeros((T, n, d))
        for t in range(T):
            m = b1 * m + (1 - b1) * g[t]
            v = b2 * v + (1 - b2) * g[t] ** 2 if name != "adamax" else np.maximum(b2 * v, abs(g[t]))
            first[t] = m / (1 - b1 ** (t + 1))
            second[t] = np.sqrt(v / (1 - b2 ** (t + 1))) if name != "adamax" else v
        arrows["first moment"] = -lr * first
        readouts["√v̂" if name != "adamax" else "u"] = second
    elif name == "rmsprop":
        alpha = float(h.get("alpha", 0.99))
        sq, rms = np.zeros((n, d)), np.zeros((T, n, d))
        for t in range(T):
            sq = alpha * sq + (1 - alpha) * g[t] ** 2
            rms[t] = np.sqrt(sq)
        readouts["√E[g²]"] = rms
    elif name == "adagrad":
        readouts["√Σg²"] = np.sqrt(np.cumsum(g**2, axis=0))
    return {
        "gradient_raw": pack(g),
        "arrows": {k: pack(v) for k, v in arrows.items()},
        "readouts": {k: pack(v) for k, v in readouts.items()},
    }


# --- reproducing the view ----------------------------------------------------------------


def python_code(view: View) -> str:
    """The `dl.race` call that gives the numbers on screen."""
    f = "f  # your function" if view.f == PYTHON else repr(view.f)
    entries, rates = entrants(view)
    schedule = f"    schedule={view.schedule!r},\n" if view.schedule else ""
    record = f"    record={view.every},\n" if view.every > 1 else ""
    start = (
        f"dl.grid({view.grid}, bounds={_tuple(view.box)})"
        if view.grid
        else repr([tuple(p) for p in view.points])
    )
    return (
        "import descentlab as dl\n\n"
        f"race = dl.race(\n    {f},\n    start={start},\n    optimizers={entries!r},\n"
        f"    lr={rates!r},\n    steps={view.steps},\n{schedule}{record})\nrace.plot()\n"
    )


def cli_code(view: View) -> str:
    """The `descentlab race` command that gives the numbers on screen."""
    names = []
    for e in view.entries:
        inside = ",".join(f"{k}={_text(v, cli=True)}" for k, v in e.hyper.items())
        names.append(f"{e.name}[{inside}]" if inside else e.name)
    rates = ",".join(f"{e.lr:g}" for e in view.entries)
    if view.grid:
        (x0, x1), (y0, y1) = view.box
        start = f"--grid {view.grid} --bounds '{x0:g},{x1:g};{y0:g},{y1:g}'"
    else:
        start = "--start '" + ";".join(f"{x!r},{y!r}" for x, y in view.points) + "'"
    schedule = ""
    if view.schedule:
        name, settings = view.schedule
        inside = ",".join(f"{k}={_text(v, cli=True)}" for k, v in settings.items())
        schedule = f" --schedule '{name}[{inside}]'" if inside else f" --schedule {name}"
    return (
        f"descentlab race {_quote(view.f)} --optimizers '{','.join(names)}' --lr {rates} "
        f"{start} --steps {view.steps}{schedule}"
        + (f" --record {view.every}" if view.every > 1 else "")
    )


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
            if not 0 <= value < (1 if key in ("momentum", "alpha") else 10):
                raise ExploreError(f"{key} of {name} must be in [0, 1), got {value:g}")
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


def _starts(view: View):
    if view.grid:
        return make_grid(view.grid, bounds=view.box)
    return np.asarray(view.points, dtype=np.float64)


def _unique(label: str, taken: Mapping) -> str:
    out, i = label, 2
    while out in taken:
        out, i = f"{label} #{i}", i + 1
    return out


def _text(v, cli: bool = False) -> str:
    if isinstance(v, tuple | list):
        inner = ",".join(_text(x) for x in v)
        return f"({inner})"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _tuple(box) -> str:
    return repr(tuple(tuple(b) for b in box))


def _quote(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.]+", text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"
