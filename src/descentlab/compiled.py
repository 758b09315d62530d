"""The compiled engine: one `torch.compile`'d function per iteration, on a structure-of-arrays
layout, with the optimizer's update written out next to the gradient so inductor fuses them.

Why structure of arrays: inductor vectorizes over the innermost dimension, so ``(N, d)`` uses
d of the eight AVX lanes while ``(d, N)`` fills them. The objective still sees ``(N, d)``: it
gets ``X.T``, a view whose columns are contiguous.

The iteration does exactly what the eager loop does, in the same order — evaluate, divergence
(back to the previous position), tolerance, optimizer update, clamp to bounds, hold stopped
points — with the update rules of torch.optim's single-tensor implementations, so the two
engines agree to float rounding (tested for every optimizer here). Hyper-parameters enter as
0-d tensors, so a new learning rate reuses the compiled code.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import torch

from .trajectory import CONVERGED, DIVERGED, INTERRUPTED

# optimizer name -> (update kind, settings that must keep these values to be compiled)
_FIXED = {
    "weight_decay": 0,
    "maximize": False,
    "foreach": None,
    "differentiable": False,
    "capturable": False,
    "fused": None,
}
SUPPORTED = {
    "gd": "sgd",
    "momentum": "sgd",
    "nesterov": "sgd",
    "adagrad": "adagrad",
    "rmsprop": "rmsprop",
    "adam": "adam",
}
_EXTRA_FIXED = {
    "sgd": {"dampening": 0},
    "adagrad": {"lr_decay": 0, "initial_accumulator_value": 0},
    "rmsprop": {"centered": False},
    "adam": {"amsgrad": False, "decoupled_weight_decay": False},
}
# Measured here (Himmelblau, 1e6 points, 1 thread): a cold compile takes 5-9 s; the eager
# engine runs 2e7 point-steps/s; compiled, warm: gd 5.2e7, adam 2.5e7. `auto` compiles only
# when the time saved exceeds a compile.
_COMPILE_SECONDS = 9.0
_EAGER_RATE = 2e7
_COMPILED_RATE = {"sgd": 5e7, "adagrad": 3e7, "rmsprop": 3e7, "adam": 2.5e7}
_CACHE: dict[tuple, Callable] = {}

# Every objective x optimizer is a closure over the same `iteration` code object, and dynamo
# allows 8 variants per code object before it silently stops compiling it. Raise that limit.
_dynamo_config = torch._dynamo.config
for _name in ("recompile_limit", "cache_size_limit"):
    if hasattr(_dynamo_config, _name):
        setattr(_dynamo_config, _name, max(getattr(_dynamo_config, _name), 256))
        break


def unsupported(objective, plan, grad) -> str | None:
    """Why this run cannot use the compiled engine, or None when it can."""
    kind = SUPPORTED.get(plan.name)
    if kind is None:
        return f"optimizer {plan.name!r} has no compiled update (compiled: {', '.join(SUPPORTED)})"
    if grad != "autograd":
        return "only autograd gradients are compiled"
    if objective.style in ("point", "loop"):
        return "f is evaluated point by point; write it over a (..., d) tensor"
    if objective.dim > 64:
        return "more than 64 coordinates (the compiled step unrolls over coordinates)"
    fixed = {**_FIXED, **_EXTRA_FIXED[kind]}
    for key, value in plan.kwargs.items():
        if key in fixed and value != fixed[key]:
            return f"{plan.name} with {key}={value!r} has no compiled update"
    return None


def _key(objective, plan, d, dtype, device, order, box) -> tuple:
    # registered functions and formulas are identified by name and text; callables by identity
    ident = (objective.name, objective.formula) if objective.formula else id(objective.fn)
    kind = SUPPORTED[plan.name]
    nesterov = bool(plan.kwargs.get("nesterov", False))
    return (ident, objective.style, kind, nesterov, d, dtype, str(device), order, box is not None)


def worth_compiling(objective, plan, n, steps, d, dtype, device, order, box) -> bool:
    """Compile when the step is already compiled, or when the eager time saved exceeds a cold
    compile (about 10 s here)."""
    if _key(objective, plan, d, dtype, device, order, box) in _CACHE:
        return True
    work = n * steps
    saved = work / _EAGER_RATE - work / _COMPILED_RATE[SUPPORTED[plan.name]]
    return saved > _COMPILE_SECONDS


def _hyper(plan, dtype, device) -> dict[str, torch.Tensor]:
    kw = plan.kwargs
    kind = SUPPORTED[plan.name]
    # the same keys for every optimizer: dynamo checks a cached graph's guards (which index
    # these keys) against new arguments, and a missing key there raised KeyError
    values = dict.fromkeys(("momentum", "eps", "alpha", "beta1", "beta2"), 0.0)
    values["lr"] = kw["lr"]
    if kind == "sgd":
        values["momentum"] = kw.get("momentum", 0.0)
    elif kind == "adagrad":
        values["eps"] = kw.get("eps", 1e-10)
    elif kind == "rmsprop":
        values.update(
            alpha=kw.get("alpha", 0.99), eps=kw.get("eps", 1e-8), momentum=kw.get("momentum", 0.0)
        )
    else:
        beta1, beta2 = kw.get("betas", (0.9, 0.999))
        values.update(beta1=beta1, beta2=beta2, eps=kw.get("eps", 1e-8))
    return {k: torch.tensor(float(v), dtype=dtype, device=device) for k, v in values.items()}


def _update(kind: str, nesterov: bool):
    """x_new, state_new = update(x, g, state, hyper, t), following torch.optim's formulas."""
    if kind == "sgd":

        def sgd(x, g, state, h, t):
            (buf,) = state
            buf = h["momentum"] * buf + g  # first step: 0 * 0 + g = g, as torch's clone(g)
            d = g + h["momentum"] * buf if nesterov else buf
            return x - h["lr"] * d, (buf,)

        return sgd
    if kind == "adagrad":

        def adagrad(x, g, state, h, t):
            (total,) = state
            total = total + g * g
            return x - h["lr"] * g / (total.sqrt() + h["eps"]), (total,)

        return adagrad
    if kind == "rmsprop":

        def rmsprop(x, g, state, h, t):
            square, buf = state
            square = h["alpha"] * square + (1 - h["alpha"]) * g * g
            step = g / (square.sqrt() + h["eps"])
            buf = h["momentum"] * buf + step
            return x - h["lr"] * buf, (square, buf)

        return rmsprop

    def adam(x, g, state, h, t):
        m, v = state
        m = torch.lerp(m, g, 1 - h["beta1"])
        v = h["beta2"] * v + (1 - h["beta2"]) * g * g
        correction1 = 1 - h["beta1"] ** t
        correction2 = 1 - h["beta2"] ** t
        denom = v.sqrt() / correction2.sqrt() + h["eps"]
        return x - (h["lr"] / correction1) * m / denom, (m, v)

    return adam


def _state(kind: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    count = {"sgd": 1, "adagrad": 1, "rmsprop": 2, "adam": 2}[kind]
    return tuple(torch.zeros_like(x) for _ in range(count))


def _norm(cols: tuple[torch.Tensor, ...], order: float) -> torch.Tensor:
    """Norm across coordinates held as separate ``(N,)`` tensors, as element-wise operations."""
    if order == math.inf:
        out = cols[0].abs()
        for c in cols[1:]:
            out = torch.maximum(out, c.abs())
        return out
    if order == 1:
        return sum((c.abs() for c in cols[1:]), cols[0].abs())
    return sum((c * c for c in cols[1:]), cols[0] * cols[0]).sqrt()


def _iteration(fn: Callable, kind: str, nesterov: bool, order: float, clamp: bool, full: bool):
    """One iteration on coordinates held as a tuple of ``(N,)`` tensors.

    Keeping every tensor the same shape lets inductor emit one fused loop; a ``(d, N)`` tensor
    with ``(N,)`` masks was split into several loops and ran at half this speed. `full` also
    returns the (reverted) position, value and gradient norm, for recording.
    """
    update = _update(kind, nesterov)

    def value_sum(cols):
        v = fn(torch.stack(cols, dim=-1))
        return v.sum(), v

    value_and_grad = torch.func.grad_and_value(value_sum, has_aux=True)

    def iteration(cols, prev, vp, gnp, active, status, taken, k, state, h, tol, limit, lo, hi):
        g, (_, v) = value_and_grad(cols)
        gn = _norm(g, order)
        ok = torch.isfinite(v) & torch.isfinite(gn) & (_norm(cols, math.inf) <= limit)
        bad = active & ~ok
        back = bad & (k > 0)  # at the start there is no earlier position to go back to
        cols = tuple(torch.where(back, p, c) for p, c in zip(prev, cols, strict=True))
        status = torch.where(bad, DIVERGED, status)
        taken = torch.where(bad, k, taken)
        active = active & ~bad
        done = active & (gn < tol)
        status = torch.where(done, CONVERGED, status)
        taken = torch.where(done, k, taken)
        active = active & ~done
        t = (k + 1).to(cols[0].dtype)
        moved, state = zip(
            *(update(c, gi, st, h, t) for c, gi, st in zip(cols, g, state, strict=True)),
            strict=True,
        )
        if clamp:
            moved = tuple(torch.clamp(m, lo[j], hi[j]) for j, m in enumerate(moved))
        new = tuple(torch.where(active, m, c) for m, c in zip(moved, cols, strict=True))
        if not full:
            return new, active, status, taken, state
        v = torch.where(back, vp, v)
        gn = torch.where(back, gnp, gn)
        return new, active, status, taken, state, cols, v, gn

    return iteration


def _compiled(objective, plan, d, dtype, device, order, box, full: bool):
    key = (*_key(objective, plan, d, dtype, device, order, box), full)
    step = _CACHE.get(key)
    if step is None:
        kind = SUPPORTED[plan.name]
        nesterov = bool(plan.kwargs.get("nesterov", False))
        step = torch.compile(_iteration(objective.fn, kind, nesterov, order, box is not None, full))
        _CACHE[key] = step
    return step


def compiled_loop(objective, grad, plan, x0, s, rec, interrupted, bar):
    """Same contract as `descent.eager_loop`: returns x, v, gn, status, taken, k (x as (N, d))."""
    from .descent import gradient_norm
    from .gradients import Evaluator

    n, d = x0.shape
    dtype, device = x0.dtype, x0.device
    full = s.every is not None
    step = _compiled(objective, plan, d, dtype, device, s.order, s.box, full)
    kind = SUPPORTED[plan.name]
    rec.engine = "compiled"
    cols = tuple(x0[:, j].contiguous() for j in range(d))
    state = tuple(_state(kind, c) for c in cols)
    h = _hyper(plan, dtype, device)
    scalar = {"dtype": dtype, "device": device}
    tol = torch.tensor(-math.inf if s.tol is None else s.tol, **scalar)
    limit = torch.tensor(s.limit, **scalar)
    lo, hi = s.box if s.box is not None else (torch.zeros(d, **scalar), torch.zeros(d, **scalar))
    active = torch.ones(n, dtype=torch.bool, device=device)
    status = torch.zeros(n, dtype=torch.int8, device=device)
    taken = torch.zeros(n, dtype=torch.int32, device=device)
    prev, vp, gnp = cols, torch.zeros(n, **scalar), torch.zeros(n, **scalar)
    for k in range(s.steps + 1):
        kt = torch.tensor(k, dtype=torch.int32, device=device)
        out = step(cols, prev, vp, gnp, active, status, taken, kt, state, h, tol, limit, lo, hi)
        new, active, status, taken, state = out[:5]
        if full:
            here, v, gn = out[5:]
            if k % s.every == 0:
                rec.add(k, torch.stack(here, dim=-1), v, gn)
            vp, gnp = v, gn
        if k == s.steps or not active.any():
            break
        if interrupted():
            status = torch.where(active, INTERRUPTED, status)
            break
        prev, cols = (
            (
                here
                if full
                else tuple(torch.where(active, c, m) for c, m in zip(cols, new, strict=True))
            ),
            new,
        )
        bar.update(k + 1)
    # where a point is still active, its position at iteration k is the input; elsewhere the
    # output (stopped points do not move), so the final position needs no extra output
    x = torch.stack([torch.where(active, c, m) for c, m in zip(cols, new, strict=True)], dim=-1)
    if not full:  # stopped points have not moved, so this is the value the eager loop reports
        v, g = Evaluator(objective, "autograd")(x)
        gn = gradient_norm(g, s.order)
    return x, v, gn, status.clone(), taken.to(torch.int64), k


def loop_or_fallback(eager_loop: Callable) -> Callable:
    """The compiled loop, which runs the eager one instead (with a one-line note) when
    compilation fails — a missing C compiler, an operation inductor cannot handle."""

    def loop(objective, grad, plan, x0, s, rec, interrupted, bar):
        began = time.perf_counter()
        try:
            return compiled_loop(objective, grad, plan, x0, s, rec, interrupted, bar)
        except Exception as exc:  # torch.compile can fail in many ways; eager always works
            if rec.steps:  # it ran a while and then failed: that is a real error, not a compile one
                raise
            first = (
                str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            )
            warnings.warn(
                f"compiled engine unavailable ({type(exc).__name__}: {first}); running eager "
                f"after {time.perf_counter() - began:.1f} s",
                stacklevel=3,
            )
            return eager_loop(objective, grad, plan, x0, s, rec, interrupted, bar)

    return loop
