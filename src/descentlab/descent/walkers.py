"""The moving parts of a descent: the parameter tensor(s) with their optimizer(s), and the
recording buffers.

A class proven element-wise gets one ``(N, d)`` tensor and one optimizer; any other class gets
one ``(d,)`` tensor and one optimizer per point, each point then being its lone run
(`optimizers` says why).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..errors import DescentError, OptimizerError
from ..memory import empty
from ..problem.gradients import Evaluator
from . import optimizers

EVALUATIONS = 100_000  # a run keeps at most this many of a closure optimizer's evaluations


class Walkers:
    """The parameter tensor(s) and optimizer(s): one of each for a class proven element-wise,
    one per point otherwise.

    Per point, an optimizer that draws random numbers (AdaHessian's Hutchinson probes) draws
    them from the point's own copy of torch's generator, which starts where the generator was
    when the run began: each point then draws what it would draw alone after the same
    ``torch.manual_seed``."""

    def __init__(
        self,
        plan: optimizers.OptimizerPlan,
        x0: torch.Tensor,
        evaluate: Evaluator,
        schedule: Callable | None = None,
    ):
        n = x0.shape[0]
        self.batched = plan.batched
        self.calling = plan.calling
        self.evaluate = evaluate
        if self.calling == "create_graph" and evaluate.kind != "autograd":
            raise OptimizerError(
                f"{plan.name} needs second derivatives (a gradient with create_graph=True), "
                "which only grad='autograd' gives"
            )
        if self.batched:
            self.params = [x0.clone().requires_grad_(True)]
        else:
            if n > 1:
                warnings.warn(
                    f"{plan.name} is not proven element-wise, so each of the {n} points runs "
                    "alone as a (d,) vector with its own optimizer (exact, and slower)",
                    stacklevel=3,
                )
            self.params = [x0[i].clone().requires_grad_(True) for i in range(n)]
        self.opts = [plan.build([p]) for p in self.params]
        for opt in self.opts:  # Newton's method takes f itself, for its Hessian
            if hasattr(opt, "objective") and getattr(opt, "objective", 0) is None:
                opt.objective = evaluate.objective
        self.taken = 0  # steps taken (the step an evaluation belongs to)
        self.evaluations: list[tuple] = []  # a closure optimizer's evaluations of f
        # one scheduler per optimizer, each stepped after its optimizer's step
        self.schedulers = (
            [_scheduler(schedule, o, plan.name) for o in self.opts] if schedule else []
        )
        # each point's generator state, per point (None: the generators as the run began)
        self.generators = _Generators(x0.device, n) if not self.batched else None

    def rate(self) -> float:
        """The learning rate the next step takes (every point's optimizer has the same)."""
        return float(self.opts[0].param_groups[0]["lr"])

    def positions(self) -> torch.Tensor:
        if self.batched:
            return self.params[0].detach()
        return torch.stack([p.detach() for p in self.params])

    def _closure(self, p: torch.Tensor, first: int = 0) -> Callable[[], torch.Tensor]:
        """The closure an optimizer that takes one (L-BFGS, AliG, SAM) calls for every
        evaluation of f it wants, the line search's trial points too: it sets the gradient and
        returns the loss; each evaluation is kept in `evaluations` as (step, point, *x, f), the
        first `EVALUATIONS` of a run."""
        lone = p.ndim == 1

        def closure():
            x = p.detach()[None] if lone else p.detach()
            v, g = self.evaluate(x)
            p.grad = g[0] if lone else g
            if len(self.evaluations) < EVALUATIONS:
                for j, (row, value) in enumerate(zip(x.tolist(), v.tolist(), strict=True)):
                    self.evaluations.append((self.taken, first + j, *row, value))
            return v.sum()

        return closure

    def _graph_gradient(self, p: torch.Tensor) -> None:
        """p's gradient with its graph kept (``backward(create_graph=True)``), for an optimizer
        that takes Hessian-vector products through it."""
        with torch.enable_grad():
            v = self.evaluate.objective.fn(p[None]).sum()
            (p.grad,) = torch.autograd.grad(v, p, create_graph=True)

    def step(self, grad: torch.Tensor, active: torch.Tensor) -> None:
        try:
            if self.batched:
                p, opt = self.params[0], self.opts[0]
                p.grad = grad
                optimizers.step_with(opt, self.calling, self._closure(p))
            else:
                rows, how, gens = grad.unbind(0), self.calling, self.generators
                closure = optimizers.CLOSURES[how]
                for i in torch.nonzero(active).flatten().tolist():
                    p, opt = self.params[i], self.opts[i]
                    if how == "create_graph":
                        self._graph_gradient(p)
                    else:
                        p.grad = rows[i]
                    gens.enter(i)
                    optimizers.step_with(opt, how, self._closure(p, i) if closure else None)
                    gens.exit(i)
            self.taken += 1
            for scheduler in self.schedulers:  # every point's clock, stopped or not
                scheduler.step()
        except DescentError:  # said already, in one line
            raise
        except Exception as exc:  # a third-party optimizer may fail in any way
            raise OptimizerError(
                f"the optimizer failed during a step: {optimizers.first_line(exc)}"
            ) from None

    @torch.no_grad()
    def hold(self, mask: torch.Tensor, where: torch.Tensor) -> None:
        """Put the points in `mask` back at their rows of `where`."""
        if self.batched:
            p = self.params[0]
            p.copy_(torch.where(mask[:, None], where, p))
            return
        for i in torch.nonzero(mask).flatten().tolist():
            self.params[i].copy_(where[i])

    @torch.no_grad()
    def clamp(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        for p in self.params:
            p.clamp_(lo, hi)


def _scheduler(schedule: Callable, opt: torch.optim.Optimizer, name: str):
    """The schedule's scheduler for `opt`, or a one-line refusal (AliG has no rate to
    schedule: its step size is its own)."""
    if "lr" not in opt.param_groups[0]:
        raise OptimizerError(f"{name} has no learning rate to schedule (no 'lr' setting)")
    try:
        return schedule(opt)
    except DescentError:
        raise
    except Exception as exc:  # a torch scheduler refusing this optimizer
        raise OptimizerError(
            f"the schedule cannot drive {name}: {optimizers.first_line(exc)}"
        ) from None


class _Generators:
    """Per-point copies of torch's default generator (and the device's), swapped in around a
    point's step (`enter`, `exit`). A point's copy is made the first time a step draws: until
    then every point shares the state the run began with, and a step that draws nothing costs
    one comparison of that state's bytes."""

    def __init__(self, device: torch.device, n: int):
        self.cuda = device.type == "cuda"
        self.start = self._get()
        self.start_bytes = self._bytes(self.start)
        self.states: list | None = None  # per point, once some step drew
        self.outside = None
        self.n = n

    def _get(self):
        cpu = torch.get_rng_state()
        return (cpu, torch.cuda.get_rng_state(torch.cuda.current_device())) if self.cuda else (cpu,)

    def _set(self, state) -> None:
        torch.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state(state[1], torch.cuda.current_device())

    @staticmethod
    def _bytes(state) -> bytes:
        return b"".join(t.numpy().tobytes() for t in state)

    def enter(self, i: int) -> None:
        if self.states is not None:
            self.outside = self._get()
            self._set(self.states[i])

    def exit(self, i: int) -> None:
        if self.states is None:
            after = self._get()
            if self._bytes(after) == self.start_bytes:
                return  # nothing drawn
            # the first draw: this point keeps what it drew; every other point starts afresh
            self.states = [self.start] * self.n
            self.states[i] = after
            self._set(self.start)
            return
        self.states[i] = self._get()
        self._set(self.outside)


class Recorder:
    """Preallocated ``(rows, N, d)`` buffers on the CPU (`memory.empty`: 2 MiB pages);
    untouched pages cost no memory, so a run that converges early uses only what it wrote.

    A loop that holds coordinates as ``(d, N)`` (the compiled engine) asks for
    `coordinate_layout`: positions are then stored ``(rows, d, N)`` and handed out as a
    ``(rows, N, d)`` view, so each row is written with contiguous stores (30 % faster here
    than interleaving the coordinates)."""

    def __init__(self, rows: int, n: int, d: int, dtype: torch.dtype):
        self.path = empty((rows, n, d), dtype)
        self.values = empty((rows, n), dtype)
        self.norms = empty((rows, n), dtype)
        self.steps: list[int] = []
        self.rates: list[float] = []  # the rate of each step, where a schedule sets it
        self.evaluations: list[tuple] = []  # (step, point, *x, f) of a closure optimizer
        self.engine = "eager"  # which loop filled it (set by the loop)
        self.kernel: str | None = None  # the compiled loop's: "c" (`engine.c`) or "inductor"
        self.by_coordinates = False
        # where a loop records positions only: fill(path, "values" | "norms") -> (R, N) array
        self.fill: Callable[[np.ndarray, str], np.ndarray] | None = None

    def reset(self) -> None:
        """Forget every row (a loop that failed hands over to another)."""
        self.steps.clear()
        self.fill = None
        if self.by_coordinates:
            rows, d, n = self.path.shape
            self.path = empty((rows, n, d), self.path.dtype)
            self.by_coordinates = False

    def coordinate_layout(self) -> None:
        rows, n, d = self.path.shape
        self.path = empty((rows, d, n), self.path.dtype)
        self.by_coordinates = True

    def defer(self, fill: Callable[[np.ndarray, str], np.ndarray]) -> None:
        """Record positions only: the values and norms are `fill`'s, from the positions, when
        first asked for (`engine.c.Kernel.rows`). Fresh pages bound a recording, so writing
        half the bytes halves its cost."""
        self.fill = fill

    def add(self, k: int, x, v, gn) -> None:
        r = len(self.steps)
        self.path[r].copy_(x.T if self.by_coordinates else x)
        if self.fill is None:
            self.values[r].copy_(v)
            self.norms[r].copy_(gn)
        self.steps.append(k)

    def put(self, rows, idx: torch.Tensor, x, v, gn) -> None:
        """Overwrite points `idx` in `rows` (an index or a slice) with positions ``(m, d)``,
        values and norms. They may live on another device than the recorder's host rows."""
        idx, x, v, gn = (t.to(self.values.device) for t in (idx, x, v, gn))
        if self.by_coordinates:
            self.path[rows, :, idx] = x.T
        else:
            self.path[rows, idx] = x
        self.values[rows, idx] = v
        self.norms[rows, idx] = gn

    def next_row(self, k: int):
        """Views of the next row (position, value, norm) for a loop that writes them itself."""
        r = len(self.steps)
        self.steps.append(k)
        return self.path[r], self.values[r], self.norms[r]

    def next_rows(self, ks: range):
        """`next_row` for iterations `ks` at once: the first row's views (the rows that follow
        it are contiguous), or None when `ks` is empty."""
        if not ks:
            return None
        r = len(self.steps)
        self.steps.extend(ks)
        return self.path[r], self.values[r], self.norms[r]

    def finish(self, k: int, x, v, gn) -> None:
        """Record the final state unless its row is already there. With only the final state
        kept (one row, still empty) and the loop's results on the CPU, the row is a view of
        them, not a copy: writing 16 MB of fresh pages took a tenth of a 1e6-point run."""
        if self.steps and self.steps[-1] == k:
            return
        adopt = (
            not self.steps
            and self.path.shape[0] == 1
            and not self.by_coordinates
            and all(t.device.type == "cpu" and t.dtype == self.values.dtype for t in (x, v, gn))
        )
        if not adopt:
            self.add(k, x, v, gn)
            return
        self.path, self.values, self.norms = x.detach()[None], v.detach()[None], gn.detach()[None]
        self.steps.append(k)

    def arrays(self):
        r = len(self.steps)
        out = []
        path = self.path.transpose(1, 2) if self.by_coordinates else self.path
        for buf in (path, self.values, self.norms):
            if self.fill is not None and buf is not path:
                out.append(None)
                continue
            part = buf[:r]
            out.append((part.clone() if r < buf.shape[0] else part).numpy())
        return (*out, np.asarray(self.steps, dtype=np.int64))
