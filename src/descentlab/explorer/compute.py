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
(['step limit'], [20])
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Mapping

import numpy as np
import torch

from ..descent import optimizers
from ..descent.race import race
from ..errors import DescentError
from ..problem.objective import Objective
from ..problem.starts import grid as make_grid
from ..status import outcome
from .request import (
    PYTHON,
    Entry,
    ExploreError,
    View,
    _text,
    parse,
)

SURFACE = 121  # samples per axis of the contour map


def answer(request: Mapping, own: Objective | None = None, parsed=None) -> dict:
    """The reply to one request: ``{"f": ..., "runs": [...], "python": ..., "cli": ...}``, or
    ``{"error": message}``. `parsed`: its ``(view, objective)`` when already checked."""
    began = time.perf_counter()
    try:
        view, objective = parsed or parse(request, own)
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

    specs = []
    for e in view.entries:
        plan = optimizers.resolve(e.name, e.lr, **e.hyper)
        # as race runs it: a tolerance set (descend's "auto"; its value is the loop's
        # argument), every step recorded, the view's schedule
        settings = Settings.of(steps=view.steps, tol=0.0, schedule=view.schedule, plan=plan)
        spec, _ = engine.spec_for(objective, plan, "autograd", 2, torch.float32, "cpu", settings)
        if spec is not None:
            specs.append(spec)
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
        outcome(int(c), bool(away))
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
        inside = ",".join(f"{k}={_text(v)}" for k, v in e.hyper.items())
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
        inside = ",".join(f"{k}={_text(v)}" for k, v in settings.items())
        schedule = f" --schedule '{name}[{inside}]'" if inside else f" --schedule {name}"
    return (
        f"descentlab race {_quote(view.f)} --optimizers '{','.join(names)}' --lr {rates} "
        f"{start} --steps {view.steps}{schedule}"
        + (f" --record {view.every}" if view.every > 1 else "")
    )


def _starts(view: View):
    if view.grid:
        return make_grid(view.grid, bounds=view.box)
    return np.asarray(view.points, dtype=np.float64)


def _unique(label: str, taken: Mapping) -> str:
    out, i = label, 2
    while out in taken:
        out, i = f"{label} #{i}", i + 1
    return out


def _tuple(box) -> str:
    return repr(tuple(tuple(b) for b in box))


def _quote(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.]+", text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"
