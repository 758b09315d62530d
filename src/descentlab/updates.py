"""torch.optim's update rules written out element-wise, for the compiled engine.

Each rule follows the optimizer's single-tensor implementation (the same operations in the same
order, but for two in Adam: a multiply by a reciprocal where torch divides, `bias_corrections`,
and lerp written out, `update_rule`), so the compiled engine agrees with torch.optim to float
rounding. Hyper-parameters come
as 0-d tensors (a new learning rate reuses compiled code); the lean step gets them packed into
one tensor (`packed_scalars`, `call_scalars`).
"""

from __future__ import annotations

import math

import torch

from .optimizers import OptimizerPlan

SUPPORTED = {
    "gd": "sgd",
    "momentum": "sgd",
    "nesterov": "sgd",
    "adagrad": "adagrad",
    "rmsprop": "rmsprop",
    "adam": "adam",
}


def kind_of(plan: OptimizerPlan) -> str:
    """The update to compile: plain gradient descent (SGD without momentum) keeps no state."""
    kind = SUPPORTED[plan.name]
    if kind == "sgd" and not plan.kwargs.get("momentum", 0.0):
        return "gd"
    return kind


HYPER = ("lr", "momentum", "eps", "alpha", "beta1", "beta2", "step_size", "inv_c2sqrt")


def bias_corrections(h: dict, t: int) -> tuple[float, float]:
    """Adam's lr / (1 - beta1^t) and 1 / sqrt(1 - beta2^t), in double precision on the host
    (one pow per step, not per point), as torch.optim's single-tensor Adam computes the first
    and the square root of the second. The update multiplies by the reciprocal where torch
    divides: a vector division cost as much as the rest of the step here (a hand-written
    4-step Adam kernel, 1e6 points: 2.5e8 point-steps/s dividing, 4.8e8 multiplying), and the
    results differ by float rounding only."""
    beta1, beta2 = float(h["beta1"]), float(h["beta2"])
    return float(h["lr"]) / (1 - beta1**t), (1 - beta2**t) ** -0.5


def packed_scalars(h: dict, tol, limit) -> list[float]:
    """The lean step's scalars, sent as one tensor: `HYPER`, tol and the blow-up limit, then
    (`call_scalars`) each sub-step's own."""
    return [float(h[k]) for k in HYPER] + [float(tol), float(limit)]


def call_scalars(h: dict, first: int, substeps: int, dead: int = 0) -> list[float]:
    """Per sub-step of one compiled call: (live, Adam's step_size, inv_c2sqrt). The first `dead`
    sub-steps change nothing (a block shorter than a call); the live ones run iterations
    `first`, `first` + 1, ..., so their step count t is the iteration + 1."""
    out = []
    for i in range(substeps):
        live = i >= dead
        out += [float(live), *bias_corrections(h, first + i - dead + 1 if live else 1)]
    return out


def hyper(plan, dtype, device) -> dict[str, torch.Tensor]:
    kw = plan.kwargs
    kind = SUPPORTED[plan.name]
    # the same keys for every optimizer: dynamo checks a cached graph's guards (which index
    # these keys) against new arguments, and a missing key there raised KeyError
    values = dict.fromkeys(HYPER, 0.0)
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


def update_rule(kind: str, nesterov: bool):
    """x_new, state_new = update(x, g, state, hyper), following torch.optim's formulas."""
    if kind == "gd":
        return lambda x, g, state, h: (x - h["lr"] * g, ())
    if kind == "sgd":

        def sgd(x, g, state, h):
            (buf,) = state
            buf = h["momentum"] * buf + g  # first step: 0 * 0 + g = g, as torch's clone(g)
            d = g + h["momentum"] * buf if nesterov else buf
            return x - h["lr"] * d, (buf,)

        return sgd
    if kind == "adagrad":

        def adagrad(x, g, state, h):
            (total,) = state
            total = total + g * g
            return x - h["lr"] * g / (total.sqrt() + h["eps"]), (total,)

        return adagrad
    if kind == "rmsprop":

        def rmsprop(x, g, state, h):
            square, buf = state
            square = h["alpha"] * square + (1 - h["alpha"]) * g * g
            step = g / (square.sqrt() + h["eps"])
            buf = h["momentum"] * buf + step
            return x - h["lr"] * buf, (square, buf)

        return rmsprop

    def adam(x, g, state, h):  # h["step_size"], h["inv_c2sqrt"]: `bias_corrections` at t
        m, v = state
        # torch.lerp(m, g, w) computes m + w (g - m) for |w| < 0.5, else g - (g - m)(1 - w);
        # inductor lowers that test to a vector select in the loop. Written out, the kernel has
        # none (with the reciprocal below: the kernel 1.2-1.5x faster); for beta1 <= 0.5 they
        # differ by float rounding
        m = m + (1 - h["beta1"]) * (g - m)
        v = h["beta2"] * v + (1 - h["beta2"]) * g * g
        denom = v.sqrt() * h["inv_c2sqrt"] + h["eps"]
        return x - h["step_size"] * (m / denom), (m, v)

    return adam


# tensors of optimizer state per coordinate row, by kind
STATE_SIZE = {"gd": 0, "sgd": 1, "adagrad": 1, "rmsprop": 2, "adam": 2}


def zero_state(kind: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(x) for _ in range(STATE_SIZE[kind]))


def coordinate_norm(cols: tuple[torch.Tensor, ...], order: float) -> torch.Tensor:
    """Norm across coordinates held as separate ``(N,)`` tensors, as element-wise operations."""
    if order == math.inf:
        out = cols[0].abs()
        for c in cols[1:]:
            out = torch.maximum(out, c.abs())
        return out
    if order == 1:
        return sum((c.abs() for c in cols[1:]), cols[0].abs())
    return sum((c * c for c in cols[1:]), cols[0] * cols[0]).sqrt()
