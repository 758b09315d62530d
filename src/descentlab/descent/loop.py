"""`descend`: many independent gradient descents as one batched loop.

The batch is one ``(N, d)`` parameter tensor and one loss ``f(X).sum()``: the points do not
interact, so each row's gradient is that point's own gradient, and an element-wise
`torch.optim` optimizer moves every row as if it ran alone.

Each iteration k evaluates f and its gradient at x_k, then

1. marks *diverged* the running points whose value or gradient is not finite or that left the
   blow-up box; they go back to x_{k-1}, their last finite position;
2. marks *converged* the running points whose gradient norm is below `tol`;
3. records (every step, every k-th, or only the final state);
4. stops if k == steps or no point is running; otherwise steps the optimizer and puts every
   stopped point back where it stopped, whatever the optimizer's state would do.

So ``f(x) = x**2`` from 1.8 with lr 0.1 and tol 0.01 converges after exactly 27 steps.
"""

from __future__ import annotations

import difflib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import defaults
from ..errors import DescentError, MemoryNeedError, StartError, check_positive
from ..memory import (
    check_eager_memory,
    check_run,
    eager_point_bytes,
    note_run,
    refuse_failed_allocations,
)
from ..problem.gradients import Evaluator, Method
from ..problem.objective import as_bounds
from ..problem.resolve import resolve as resolve_problem
from ..progress import Progress, interrupt_flag
from ..status import CONVERGED, DIVERGED, INTERRUPTED
from . import optimizers, schedules
from .optimizers import state_tensors
from .rules import _some, gradient_norm, healthy, tolerance_at
from .trajectory import Trajectory
from .walkers import Recorder, Walkers

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float": torch.float32,
    "single": torch.float32,
}
_NORMS = {"inf": math.inf, "max": math.inf, "2": 2.0, "l2": 2.0, "1": 1.0, "l1": 1.0}
DEFAULT_STEPS = defaults.STEPS


@refuse_failed_allocations
def descend(
    f,
    start,
    optimizer: str | type[torch.optim.Optimizer] = "gd",
    lr: float | None = None,
    steps: int = DEFAULT_STEPS,
    tol: float | str | None = "auto",
    norm: str | float = "inf",
    bounds=None,
    record: str | int = "all",
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    grad: Method = "autograd",
    dim: int | None = None,
    blowup: float | None = None,
    max_memory: float | None = None,
    engine: str = "auto",
    schedule=None,
    **hyper,
) -> Trajectory:
    """Run gradient descent on `f` from every starting point at once.

    Args:
        f: a registered name (``"himmelblau"``), a formula (``"x**2 + y**2"``), a Python
            callable (scalar-style, one argument per coordinate, or over ``(..., d)``), or an
            `Objective`.
        start: a number, a point ``(x, y)``, an ``(N, d)`` array, `grid(n)` or `random(n)`.
        optimizer: a name (``gd momentum nesterov adagrad rmsprop adam adamw adamax nadam radam
            adadelta rprop lbfgs``) or any `torch.optim.Optimizer` subclass.
        lr: learning rate (default 0.01; 1.0 for adadelta and lbfgs).
        steps: the most steps any point takes.
        tol: a point converges (and stops) when its gradient norm is below `tol`. ``"auto"``
            (the default): 100 eps of the dtype times the median gradient norm at the starts
            (`status.auto_tol`), so a walk that reached a minimum is called converged
            whatever the function's scale; a number: that bound; None: never (every point
            takes every step).
        norm: gradient norm for `tol`: ``"inf"`` (largest partial derivative, |dx| in 1-D) or 2.
        bounds: optional box ``(lo, hi)`` or one pair per axis; steps are clamped into it.
        record: ``"all"`` (every step), an int k (every k-th step and the last), ``"final"``.
        dtype: ``torch.float32`` (default, as the examples) or ``torch.float64``.
        device: ``"cpu"`` or a CUDA device.
        progress: show a progress bar (None: only on a terminal, for runs over a second).
        grad: ``"autograd"``, ``"central"`` (finite differences) or a callable derivative.
        dim: dimension for d-dimensional registered functions (``dim=5`` for Rastrigin 5-D).
        blowup: a point with a coordinate beyond this magnitude is diverged (default
            1e6 × the largest magnitude among the starts, the domain and 1).
        max_memory: bytes the recording may use (default 80% of what the process may
            allocate: free memory, rlimits and the cgroup's limit, `memory.limits`). A run
            whose own arrays and recording together exceed that is refused before it starts
            (`MemoryNeedError`), as is a grid or random start too large, and so is an
            allocation that fails during the run.
        engine: ``"eager"`` (torch.optim, autograd, every feature), ``"compiled"`` (for gd,
            momentum, nesterov, adagrad, rmsprop and adam with autograd gradients: on the CPU
            the gradient, the update and every stop rule written out as one C loop and built
            by the C compiler in about a second, `engine.c`; where that cannot translate f, or
            on a GPU, `torch.compile` on a structure-of-arrays layout with the stop rules
            checked every 64 steps and replayed exactly), or ``"auto"``: compiled when the
            work repays the build or the loop is already built (in this process, or on disk
            from an earlier one). ``meta["kernel"]`` says which compiler ran: ``"c"`` or
            ``"inductor"``.
        schedule: a learning-rate schedule, stepped once per step (`schedules`): a name
            (``"cosine"``, ``"step"``, ``"multistep"``, ``"exponential"``, ``"warmup"``,
            ``"onecycle"``, ``"inverse_sqrt"``, ``"constant"``) or a name with its settings
            (``("cosine", {"warmup": 5})``), or a factory
            ``lambda opt: torch.optim.lr_scheduler.X(opt, ...)``. The rate each step took is
            in ``Trajectory.rates``. Runs eagerly.
        **hyper: optimizer hyper-parameters (``momentum=0.9``, ``betas=(0.9, 0.99)``, ...).

    Returns:
        A `Trajectory`.

    Example:
        >>> run = descend(lambda x: x**2, start=1.8, lr=0.1, tol=0.01)
        >>> run.steps, f"{run.x:.2f}"
        (27, '0.00')
    """
    dtype = _dtype(dtype)
    device = _device(device)
    _check_int("steps", steps)
    if tol != "auto":
        check_positive("tol", tol, allow_zero=True)
    check_positive("blowup", blowup)
    order = _norm(norm)
    every = _record_every(record)
    check_engine(engine)
    _check_hyper(optimizer, hyper)
    plan = optimizers.ready(optimizers.resolve(optimizer, lr, **hyper), dtype)
    rows = 1 if every is None else steps // every + 1 + (steps % every != 0)

    def check_memory(n: int, d: int, unbuilt: bool = True) -> None:  # before a grid is built
        state, on_cpu = state_tensors(plan), device.type == "cpu"
        check_run(rows, n, d, dtype, max_memory, record, state, on_cpu, unbuilt)

    problem = resolve_problem(
        f,
        start,
        dim=dim,
        dtype=dtype,
        device=device,
        need_grad=grad == "autograd",
        check=check_memory,
    )
    objective, x0 = problem.objective, problem.x0
    n, d = x0.shape
    check_memory(n, d, unbuilt=False)
    if tol == "auto":
        tol = tolerance_at(objective, grad, x0, order)
    note_run(n, recording=record != "final")
    box = _clamp_box(bounds, d, x0)
    low, high = torch.aminmax(x0)  # (x0.abs().max() writes an |x0| copy first)
    largest = max(-float(low), float(high))
    limit = blowup or 1e6 * max(1.0, largest, *_domain_scale(objective.domain))
    limit = min(limit, torch.finfo(dtype).max)  # finite in the dtype: an infinite x is beyond it

    settings = Settings.of(
        steps=steps,
        tol=tol,
        order=order,
        limit=limit,
        every=every,
        box=box,
        schedule=schedule,
        plan=plan,
        compiled=engine != "eager",  # (eager steps the scheduler itself)
    )
    rec = Recorder(rows, n, d, dtype)
    began = time.perf_counter()
    spec, reason = _spec(engine, objective, plan, grad, x0, settings)
    loop = _choose_engine(engine, spec, reason, n, settings)
    if loop is eager_loop and device.type == "cpu" and n > 4096:
        recorded = rows * (record != "final")
        if engine == "eager":  # (whether the compiled engine could, for the advice)
            from .. import engine as compiled

            spec, _ = compiled.spec_for(objective, plan, grad, d, dtype, device, settings)
        loop = _eager_if_it_fits(objective, plan, grad, x0, recorded, engine, spec)
    with interrupt_flag() as interrupted, Progress(progress, steps) as bar:
        x, v, gn, status, taken, k = loop(
            objective, grad, plan, x0, settings, rec, interrupted, bar
        )
        bar.update(k + 1)  # the compiled loops report between calls: a run of one call, never
    rec.finish(k, x, v, gn)
    if settings.rates is not None and rec.engine == "compiled":  # the rates it took
        rec.rates = list(settings.rates[:k])

    meta = {
        "function": objective.name,
        "source": _source(f),
        "formula": objective.formula,
        "dim": d,
        "domain": [list(b) for b in objective.domain] if objective.domain else None,
        "minima": [list(m) for m in objective.minima],
        "minimum_value": objective.minimum_value,
        "optimizer": plan.name,
        # one (N, d) tensor, or each point alone as a (d,) tensor; how its step is called
        "batched": plan.batched,
        "calling": plan.calling,
        "lr": plan.lr,
        "hyper": {key: _jsonable(val) for key, val in plan.kwargs.items() if key != "lr"},
        "steps": steps,
        "tol": tol,
        "norm": norm if isinstance(norm, str) else float(norm),
        "bounds": [list(b) for b in box_to_list(box)] if box is not None else None,
        "record": record if isinstance(record, str) else int(record),
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(device),
        "grad": grad if isinstance(grad, str) else "callable",
        "blowup": limit,
        "single": problem.single,
        "grid_shape": list(problem.grid_shape),
        "elapsed_s": time.perf_counter() - began,
        "engine": rec.engine,
        "kernel": rec.kernel,
    }
    if rec.evaluations:  # a closure optimizer's every evaluation (the line search's)
        meta["evaluations"] = [list(e) for e in rec.evaluations]
    if schedule is not None:
        meta["schedule"] = schedules.describe(schedule)
        meta["rates"] = [float(r) for r in rec.rates]
    cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
    path, values, norms, recorded = rec.arrays()
    return Trajectory(
        path=path,
        _values=values,
        _grad_norms=norms,
        recorded=recorded,
        start_=cpu(x0),
        x_=cpu(x),
        value_=cpu(v),
        grad_norm_=cpu(gn),
        steps_=cpu(taken),
        status_=cpu(status),
        meta=meta,
        objective=objective,
        _fill=rec.fill,
    )


@dataclass(frozen=True)
class Settings:
    """What every loop needs besides the objective, optimizer and starts."""

    steps: int
    tol: float | None
    order: float
    limit: float
    every: int | None  # record every k-th iteration; None records the final state only
    box: tuple[torch.Tensor, torch.Tensor] | None
    schedule: Callable | None = None  # a factory optimizer -> torch scheduler (`schedules`)
    # each step's rate under the schedule, for the compiled engine (`schedules.planned`)
    rates: tuple[float, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        steps: int,
        tol: float | None = None,
        order: float = math.inf,
        limit: float = math.inf,
        every: int | None = 1,
        box=None,
        schedule=None,
        plan=None,
        compiled: bool = True,
    ) -> Settings:
        """A run's rules, by name. `schedule`: a name, ``(name, settings)`` or a factory
        (`schedules.resolve`); where the run may be compiled and `plan`'s update compiles,
        each step's rate is planned here, the one place that decides whether a schedule can
        compile (`engine.unsupported` refuses a schedule left unplanned)."""
        factory = schedules.resolve(schedule, steps)
        rates = None
        if factory is not None and compiled and plan is not None:
            from ..engine.updates import SUPPORTED  # (the engine loads when a run asks)

            if plan.name in SUPPORTED:
                rates = schedules.planned(factory, plan, steps)
        return cls(steps, tol, order, limit, every, box, factory, rates)


def eager_loop(objective, grad, plan, x0, s: Settings, rec: Recorder, interrupted, bar):
    """The reference loop: torch.optim on an ``(N, d)`` tensor, autograd (or another gradient)
    per iteration, stop rules applied point by point. Returns x, v, gn, status, taken, k, where
    taken is every point's step count (k for those still running or interrupted)."""
    n = x0.shape[0]
    rec.engine = "eager"
    evaluate = Evaluator(objective, grad)
    walkers = Walkers(plan, x0, evaluate, s.schedule)
    rec.evaluations = walkers.evaluations  # (the same list: a closure optimizer fills it)
    active = torch.ones(n, dtype=torch.bool, device=x0.device)
    status = torch.zeros(n, dtype=torch.int8, device=x0.device)
    taken = torch.zeros(n, dtype=torch.int64, device=x0.device)
    prev = None
    for k in range(s.steps + 1):
        x = walkers.positions()
        v, g = evaluate(x)
        gn = gradient_norm(g, s.order)
        bad = active & ~healthy(x, v, gn, s.limit)
        if _some(bad):
            if prev is not None:  # back to x_{k-1}, the last finite position
                px, pv, pgn = prev
                walkers.hold(bad, px)
                x, v, gn = walkers.positions(), torch.where(bad, pv, v), torch.where(bad, pgn, gn)
            status[bad], taken[bad], active = DIVERGED, k, active & ~bad
        if s.tol is not None:
            done = active & (gn < s.tol)
            status[done], taken[done], active = CONVERGED, k, active & ~done
        if s.every is not None and k % s.every == 0:
            rec.add(k, x, v, gn)
        running = int(torch.count_nonzero(active))
        if k == s.steps or running == 0:
            break
        if interrupted():
            status[active] = INTERRUPTED
            break
        prev = (x.clone(), v, gn)
        if s.schedule is not None:  # the rate this step takes
            rec.rates.append(walkers.rate())
        walkers.step(g, active)
        if s.box is not None:
            walkers.clamp(*s.box)
        if running < n:
            walkers.hold(~active, prev[0])
        bar.update(k + 1)
    taken[(status == 0) | (status == INTERRUPTED)] = k
    return x, v, gn, status, taken, k


def _spec(engine, objective, plan, grad, x0, s: Settings):
    """The compiled engine's `Spec` of this run and None, or None and why it has none
    (`engine.spec_for`; an eager run asks nothing of the engine)."""
    if engine == "eager":
        return None, "engine='eager'"
    from .. import engine as compiled

    return compiled.spec_for(objective, plan, grad, x0.shape[1], x0.dtype, x0.device, s)


def _choose_engine(engine, spec, reason: str | None, n: int, s: Settings):
    """The loop to run: eager unless compiled was asked for (and can run), or `auto` finds
    compiling worth its time."""
    if engine == "eager":
        return eager_loop
    from .. import engine as compiled

    if reason is not None:
        if engine == "compiled":
            raise DescentError(f"the compiled engine cannot run this: {reason}; use engine='eager'")
        return eager_loop
    if engine == "auto" and not compiled.worth_compiling(spec, n, s.steps, s.every):
        return eager_loop
    return compiled.loop_for(eager_loop, spec)


def _eager_if_it_fits(objective, plan, grad, x0, rows: int, engine: str, spec):
    """The eager loop, where its memory (f's part measured on 64 points,
    `memory.eager_point_bytes`) fits; else, under ``auto``, the compiled one (`spec`, None
    where it cannot run), which holds a third of it or less; else a `MemoryNeedError`."""
    n, d = x0.shape
    fn = objective.fn if grad == "autograd" else (lambda x: objective.fn(x.detach()))
    per_point = eager_point_bytes(fn, x0[:64], state_tensors(plan))
    can = ", or engine='compiled'" if spec is not None else ""
    try:
        check_eager_memory(per_point, n, rows, d, x0.dtype, can)
    except MemoryNeedError:
        if engine == "auto" and spec is not None:
            from .. import engine as compiled

            return compiled.loop_for(eager_loop, spec)
        raise
    return eager_loop


def check_engine(engine) -> None:
    engines = ("auto", "eager", "compiled")
    if engine not in engines:
        close = difflib.get_close_matches(str(engine).lower(), engines, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DescentError(f"engine must be 'auto', 'eager' or 'compiled', got {engine!r}{hint}")


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise DescentError(f"dtype must be float32 or float64, got {dtype!r}")


def _device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DescentError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DescentError("device 'cuda' asked for, but CUDA is not available; use device='cpu'")
    return dev


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DescentError(f"{name} must be an integer >= 0, got {value!r}")


def _norm(norm) -> float:
    key = str(norm).lower()
    if key in _NORMS:
        return _NORMS[key]
    if isinstance(norm, (int, float)) and (norm in (1, 2) or math.isinf(norm)):
        return float(norm)
    raise DescentError(f"norm must be 'inf' (largest partial derivative), 2 or 1; got {norm!r}")


def _record_every(record) -> int | None:
    if record == "all":
        return 1
    if record == "final":
        return None
    if isinstance(record, (int, np.integer)) and not isinstance(record, bool) and record >= 1:
        return int(record)
    raise DescentError(f"record must be 'all', 'final' or a positive integer k, got {record!r}")


def _check_hyper(optimizer, hyper: dict) -> None:
    """Catch misspelled descend() arguments before they reach the optimizer as hyper-params."""
    own = [
        name
        for name, p in inspect.signature(descend).parameters.items()  # (through the wrapper)
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    accepted = optimizers.accepted_hyper(optimizer)
    for key in hyper:
        if accepted is None or key in accepted:
            continue
        close = difflib.get_close_matches(key, own, n=1, cutoff=0.75)
        if close:
            raise DescentError(f"descend() has no argument {key!r}; did you mean {close[0]!r}?")


def _domain_scale(domain) -> list[float]:
    return [max(abs(lo), abs(hi)) for lo, hi in domain] if domain else []


def _clamp_box(bounds, d: int, x0: torch.Tensor):
    if bounds is None:
        return None
    box = as_bounds(bounds, d)
    lo = torch.tensor([b[0] for b in box], dtype=x0.dtype, device=x0.device)
    hi = torch.tensor([b[1] for b in box], dtype=x0.dtype, device=x0.device)
    outside = ((x0 < lo) | (x0 > hi)).any(-1)
    if outside.any():
        i = int(torch.nonzero(outside)[0])
        raise StartError(f"start point {i} {x0[i].tolist()} lies outside bounds {list(box)}")
    return lo, hi


def box_to_list(box):
    lo, hi = box
    return list(zip(lo.tolist(), hi.tolist(), strict=True))


def _source(f) -> str:
    from ..problem.functions import REGISTRY, normalize_name
    from ..problem.objective import Objective

    if isinstance(f, str):
        return "registry" if normalize_name(f) in REGISTRY else "formula"
    return "objective" if isinstance(f, Objective) else "callable"


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)
