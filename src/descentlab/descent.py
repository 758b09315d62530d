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

import contextlib
import difflib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from . import optimizers
from .errors import DescentError, OptimizerError, RecordingError, StartError, check_positive
from .gradients import Evaluator, Method
from .objective import as_bounds
from .problem import resolve as resolve_problem
from .trajectory import CONVERGED, DIVERGED, INTERRUPTED, Trajectory

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "double": torch.float64,
           "float": torch.float32, "single": torch.float32}  # fmt: skip
_NORMS = {"inf": math.inf, "max": math.inf, "2": 2.0, "l2": 2.0, "1": 1.0, "l1": 1.0}
DEFAULT_STEPS = 1000


def descend(
    f,
    start,
    optimizer: str | type[torch.optim.Optimizer] = "gd",
    lr: float | None = None,
    steps: int = DEFAULT_STEPS,
    tol: float | None = None,
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
        tol: a point converges when its gradient norm is below `tol` (None: never).
        norm: gradient norm for `tol`: ``"inf"`` (largest partial derivative, |dx| in 1-D) or 2.
        bounds: optional box ``(lo, hi)`` or one pair per axis; steps are clamped into it.
        record: ``"all"`` (every step), an int k (every k-th step and the last), ``"final"``.
        dtype: ``torch.float32`` (default, as the seeds) or ``torch.float64``.
        device: ``"cpu"`` or a CUDA device.
        progress: show a progress bar (None: only on a terminal, for runs over a second).
        grad: ``"autograd"``, ``"central"`` (finite differences) or a callable derivative.
        dim: dimension for d-dimensional registered functions (``dim=5`` for Rastrigin 5-D).
        blowup: a point with a coordinate beyond this magnitude is diverged (default
            1e6 × the largest magnitude among the starts, the domain and 1).
        max_memory: bytes the recording may use (default 80% of available memory).
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
    check_positive("tol", tol, allow_zero=True)
    check_positive("blowup", blowup)
    order = _norm(norm)
    every = _record_every(record)
    _check_hyper(optimizer, hyper)
    plan = optimizers.resolve(optimizer, lr, **hyper)
    problem = resolve_problem(f, start, dim=dim, dtype=dtype, device=device,
                              need_grad=grad == "autograd")  # fmt: skip
    objective, x0 = problem.objective, problem.x0
    n, d = x0.shape
    box = _clamp_box(bounds, d, x0)
    limit = blowup or 1e6 * max(1.0, float(x0.abs().max()), *_domain_scale(objective.domain))
    rows = 1 if every is None else steps // every + 1 + (steps % every != 0)
    _check_memory(rows, n, d, dtype, max_memory, record)

    evaluate = Evaluator(objective, grad)
    walkers = _Walkers(plan, x0, evaluate)
    rec = _Recorder(rows, n, d, dtype)
    active = torch.ones(n, dtype=torch.bool, device=device)
    status = torch.zeros(n, dtype=torch.int8, device=device)
    taken = torch.zeros(n, dtype=torch.int64, device=device)
    prev = None
    began = time.perf_counter()
    with _interrupt_flag() as interrupted, _Progress(progress, steps) as bar:
        for k in range(steps + 1):
            x = walkers.positions()
            v, g = evaluate(x)
            gn = torch.linalg.vector_norm(g, ord=order, dim=-1)
            ok = torch.isfinite(v) & torch.isfinite(gn) & (x.abs() <= limit).all(-1)
            bad = active & ~ok
            if bad.any():
                if prev is not None:  # back to x_{k-1}, the last finite position
                    px, pv, pgn = prev
                    walkers.hold(bad, px)
                    x, v, gn = (
                        walkers.positions(),
                        torch.where(bad, pv, v),
                        torch.where(bad, pgn, gn),
                    )
                status[bad], taken[bad], active = DIVERGED, k, active & ~bad
            if tol is not None:
                done = active & (gn < tol)
                status[done], taken[done], active = CONVERGED, k, active & ~done
            if every is not None and k % every == 0:
                rec.add(k, x, v, gn)
            if k == steps or not active.any():
                break
            if interrupted():
                status[active] = INTERRUPTED
                break
            prev = (x.clone(), v, gn)
            walkers.step(g, active)
            if box is not None:
                walkers.clamp(*box)
            if not active.all():
                walkers.hold(~active, prev[0])
            bar.update(k + 1)
    taken[status == 0] = k
    taken[status == INTERRUPTED] = k
    rec.finish(k, x, v, gn)

    meta = {
        "function": objective.name,
        "source": _source(f),
        "formula": objective.formula,
        "dim": d,
        "domain": [list(b) for b in objective.domain] if objective.domain else None,
        "minima": [list(m) for m in objective.minima],
        "minimum_value": objective.minimum_value,
        "optimizer": plan.name,
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
    }
    cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
    path, values, norms, recorded = rec.arrays()
    return Trajectory(
        path=path,
        values=values,
        grad_norms=norms,
        recorded=recorded,
        start_=cpu(x0),
        x_=cpu(x),
        value_=cpu(v),
        grad_norm_=cpu(gn),
        steps_=cpu(taken),
        status_=cpu(status),
        meta=meta,
        objective=objective,
    )


class _Walkers:
    """The parameter tensor(s) and optimizer(s): one of each for element-wise optimizers, one
    per point for optimizers that couple the entries of a tensor (run point by point)."""

    def __init__(self, plan: optimizers.OptimizerPlan, x0: torch.Tensor, evaluate: Evaluator):
        n = x0.shape[0]
        self.batched = plan.elementwise or n == 1
        self.closure = plan.needs_closure
        self.evaluate = evaluate
        if self.batched:
            self.params = [x0.clone().requires_grad_(True)]
        else:
            if n > 1:
                warnings.warn(
                    f"{plan.name} couples the coordinates of a tensor, so it would mix the points "
                    f"of a batch; running {n} points one by one (slower)",
                    stacklevel=3,
                )
            self.params = [x0[i : i + 1].clone().requires_grad_(True) for i in range(n)]
        self.opts = [plan.build([p]) for p in self.params]

    def positions(self) -> torch.Tensor:
        if self.batched:
            return self.params[0].detach()
        return torch.cat([p.detach() for p in self.params])

    def _closure(self, p: torch.Tensor) -> Callable[[], torch.Tensor]:
        def closure():
            v, g = self.evaluate(p.detach())
            p.grad = g
            return v.sum()

        return closure

    def step(self, grad: torch.Tensor, active: torch.Tensor) -> None:
        try:
            if self.batched:
                p, opt = self.params[0], self.opts[0]
                p.grad = grad
                opt.step(self._closure(p)) if self.closure else opt.step()
                return
            for i in torch.nonzero(active).flatten().tolist():
                p, opt = self.params[i], self.opts[i]
                p.grad = grad[i : i + 1]
                opt.step(self._closure(p)) if self.closure else opt.step()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise OptimizerError(f"the optimizer failed during a step: {exc}") from None

    @torch.no_grad()
    def hold(self, mask: torch.Tensor, where: torch.Tensor) -> None:
        """Put the points in `mask` back at their rows of `where`."""
        if self.batched:
            p = self.params[0]
            p.copy_(torch.where(mask[:, None], where, p))
            return
        for i in torch.nonzero(mask).flatten().tolist():
            self.params[i].copy_(where[i : i + 1])

    @torch.no_grad()
    def clamp(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        for p in self.params:
            p.clamp_(lo, hi)


class _Recorder:
    """Preallocated ``(rows, N, d)`` buffers on the CPU; untouched pages cost no memory, so
    a run that converges early uses only what it wrote."""

    def __init__(self, rows: int, n: int, d: int, dtype: torch.dtype):
        self.path = torch.empty((rows, n, d), dtype=dtype)
        self.values = torch.empty((rows, n), dtype=dtype)
        self.norms = torch.empty((rows, n), dtype=dtype)
        self.steps: list[int] = []

    def add(self, k: int, x, v, gn) -> None:
        r = len(self.steps)
        self.path[r].copy_(x)
        self.values[r].copy_(v)
        self.norms[r].copy_(gn)
        self.steps.append(k)

    def finish(self, k: int, x, v, gn) -> None:
        if not self.steps or self.steps[-1] != k:
            self.add(k, x, v, gn)

    def arrays(self):
        r = len(self.steps)
        out = []
        for buf in (self.path, self.values, self.norms):
            part = buf[:r]
            out.append((part.clone() if r < buf.shape[0] else part).numpy())
        return (*out, np.asarray(self.steps, dtype=np.int64))


class _Progress:
    """A Rich progress bar that appears only after a run has taken a second."""

    def __init__(self, enabled: bool | None, total: int):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.forced = enabled is True
        self.total = total
        self.bar = None
        self.began = time.perf_counter()
        self.last = 0.0

    def __enter__(self):
        return self

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < 0.1:
            return
        self.last = now
        if self.bar is None:
            if not self.forced and now - self.began < 1.0:
                return
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("descending", total=self.total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


@contextlib.contextmanager
def _interrupt_flag():
    """Turn the first Ctrl-C into a request to stop after the current step; a second one
    interrupts at once. Outside the main thread signals cannot be caught, so nothing changes."""
    hit = [False]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: hit[0]
    finally:
        signal.signal(signal.SIGINT, previous)


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
    own = list(descend.__code__.co_varnames[: descend.__code__.co_argcount])
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


def _available_memory() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def _check_memory(rows: int, n: int, d: int, dtype, max_memory, record) -> None:
    size = torch.finfo(dtype).bits // 8
    per_row = n * (d + 2) * size
    need = rows * per_row
    budget = max_memory if max_memory is not None else 0.8 * _available_memory()
    if need <= budget:
        return
    fit = max(1, int(budget // per_row) - 1)
    every = max(2, math.ceil(rows / fit))
    what = (
        "every step"
        if record == "all"
        else f"every {record}th step"
        if record != "final"
        else "the final state"
    )
    raise RecordingError(
        f"recording {what} of {n:,} points in {d}-D ({rows:,} rows) needs {_gb(need)} but "
        f"{_gb(budget)} is available; use record='final', record={every} "
        f"(every {every}th step), or fewer points"
    )


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def _source(f) -> str:
    from .functions import REGISTRY, normalize_name
    from .objective import Objective

    if isinstance(f, str):
        return "registry" if normalize_name(f) in REGISTRY else "formula"
    return "objective" if isinstance(f, Objective) else "callable"


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)
