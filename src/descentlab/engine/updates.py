"""torch.optim's update rules written out element-wise, for the compiled engine.

Each rule follows the optimizer's single-tensor implementation on the CPU operation by
operation, with torch's roundings: the scalars it derives in double precision (1 - beta,
lr / (1 - beta1^t)) are derived the same way, and where its kernels fuse a multiply and an add
(add with alpha, addcmul, lerp: one FMA wherever the CPU has one) the rule says so with
`torch.addcmul`, which the C backend (`translate`) writes as one ``fma``. The C loop's
positions then equal torch.optim's bit for bit for gd, momentum and Nesterov (Himmelblau,
float32, 100 steps, here); with Adagrad, RMSprop and Adam 76-99 % of the walks do, the others
end an ulp or more apart, from two causes: torch's float32 square root here (MKL's) is not
correctly rounded, and Adam multiplies by a reciprocal where torch divides
(`bias_corrections`). Hyper-parameters come as 0-d tensors (a new learning rate reuses
compiled code); the lean step gets them packed into one tensor (`packed_scalars`,
`call_scalars`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # a plan's name and keywords are all this reads
    from ..descent.optimizers import OptimizerPlan

SUPPORTED = {
    "gd": "sgd",
    "momentum": "sgd",
    "nesterov": "sgd",
    "adagrad": "adagrad",
    "rmsprop": "rmsprop",
    "adam": "adam",
}


def kind_of(plan: OptimizerPlan) -> str:
    """The update to compile, where torch.optim's formula differs: plain gradient descent (SGD
    without momentum) keeps no state; RMSprop with momentum is another formula than without;
    Adam's lerp takes one of two formulas by its weight 1 - beta1 ("adam": below 0.25 in any
    dtype, so always m + w (g - m); "adam_lerp" chooses per point, as torch does)."""
    kind = SUPPORTED[plan.name]
    if kind == "sgd" and not plan.kwargs.get("momentum", 0.0):
        return "gd"
    if kind == "rmsprop" and plan.kwargs.get("momentum", 0.0):
        return "rmsprop_momentum"
    if kind == "adam" and not 1 - plan.kwargs.get("betas", (0.9, 0.999))[0] < 0.25:
        return "adam_lerp"
    return kind


def base_kind(kind: str) -> str:
    """`kind_of`'s name without its variant: "rmsprop_momentum" -> "rmsprop"."""
    return kind.split("_")[0]


HYPER = (
    *("lr", "momentum", "eps", "alpha", "beta1", "beta2"),
    *("one_minus_alpha", "one_minus_beta1", "one_minus_beta2", "step_size", "inv_c2sqrt"),
)


def bias_corrections(h: dict, t: int) -> tuple[float, float]:
    """Adam's lr / (1 - beta1^t) and 1 / (1 - beta2^t)^0.5 at step t, in double precision from
    the hyper-parameters as given (`floats`), as torch.optim's single-tensor Adam computes the
    first and the square root of the second (one pow per step, not per point). The step
    multiplies by the reciprocal where torch divides: exact division cost 8 % of Adam's rate
    in the C loop (1e6 points: 8.6e8 against 9.3e8 point-steps/s) and the two differ by a
    rounding; torch's own float32 square root, here, is not correctly rounded (MKL's: 19 % of
    random inputs an ulp off), so exact division would not make Adam bit-exact anyway."""
    beta1, beta2 = float(h["beta1"]), float(h["beta2"])
    return float(h["lr"]) / (1 - beta1**t), (1 - beta2**t) ** -0.5


def packed_scalars(h: dict, tol, limit) -> list[float]:
    """The lean step's scalars, sent as one tensor: `HYPER`, tol and the blow-up limit, then
    (`call_scalars`) each sub-step's own."""
    return [float(h[k]) for k in HYPER] + [float(tol), float(limit)]


SUBSTEP = 4  # scalars per sub-step (`call_scalars`)


def call_scalars(
    h: dict, first: int, substeps: int, dead: int = 0, rates: tuple | None = None
) -> list[float]:
    """Per sub-step of one compiled call: (live, lr, Adam's step_size, inv_c2sqrt). The first
    `dead` sub-steps change nothing (a block shorter than a call); the live ones run iterations
    `first`, `first` + 1, ..., so their step count t is the iteration + 1, and their rate is
    `rates`' for that iteration (a schedule's) or the fixed one."""
    out = []
    for i in range(substeps):
        live = i >= dead
        k = first + i - dead if live else 0
        at = rate_at(h, k, rates)
        out += [float(live), at["lr"], *bias_corrections(at, k + 1)]
    return out


def rate_at(h: dict, k: int, rates: tuple | None) -> dict:
    """`h` (`floats`) with the rate of iteration k's update: a schedule's `rates[k]`, or the
    fixed one (past the last step, the last rate: that update is never taken)."""
    if rates is None:
        return h
    return {**h, "lr": float(rates[min(k, len(rates) - 1)]) if rates else float(h["lr"])}


def floats(plan) -> dict[str, float]:
    """The hyper-parameters as Python floats, the differences 1 - beta computed in double
    precision as torch.optim does before its kernels round them to the tensors' dtype."""
    kw = plan.kwargs
    kind = SUPPORTED[plan.name]
    # the same keys for every optimizer: dynamo checks a cached graph's guards (which index
    # these keys) against new arguments, and a missing key there raised KeyError
    values = dict.fromkeys(HYPER, 0.0)
    values["lr"] = float(kw["lr"])
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
    for key in ("alpha", "beta1", "beta2"):
        values[f"one_minus_{key}"] = 1 - float(values[key])
    return {k: float(v) for k, v in values.items()}


def hyper(plan, dtype, device) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=dtype, device=device) for k, v in floats(plan).items()}


def update_rule(kind: str, nesterov: bool):
    """x_new, state_new = update(x, g, state, hyper), as torch.optim computes it on the CPU:
    ``torch.addcmul(c, a, b)`` is its fused ``c + a b`` (`fma`)."""
    fma = torch.addcmul
    if kind == "gd":  # param.add_(grad, alpha=-lr)
        return lambda x, g, state, h: (fma(x, -h["lr"], g), ())
    if kind == "sgd":

        def sgd(x, g, state, h):
            (buf,) = state
            # buf.mul_(momentum).add_(grad); the first step: 0 * 0 + g = g, as torch's clone(g)
            buf = h["momentum"] * buf + g
            d = fma(g, h["momentum"], buf) if nesterov else buf  # grad.add(buf, alpha=momentum)
            return fma(x, -h["lr"], d), (buf,)

        return sgd
    if kind == "adagrad":

        def adagrad(x, g, state, h):
            (total,) = state
            total = fma(total, g, g)  # state_sum.addcmul_(grad, grad, value=1)
            # param.addcdiv_(grad, std, value=-clr)
            return x + (-h["lr"] * g) / (total.sqrt() + h["eps"]), (total,)

        return adagrad
    if kind in ("rmsprop", "rmsprop_momentum"):

        def rmsprop(x, g, state, h):
            square = fma(h["alpha"] * state[0], h["one_minus_alpha"] * g, g)
            avg = square.sqrt() + h["eps"]
            if kind == "rmsprop":  # param.addcdiv_(grad, avg, value=-lr)
                return x + (-h["lr"] * g) / avg, (square,)
            buf = h["momentum"] * state[1] + g / avg  # buf.mul_(momentum).addcdiv_(grad, avg)
            return fma(x, -h["lr"], buf), (square, buf)  # param.add_(buf, alpha=-lr)

        return rmsprop

    def adam(x, g, state, h):  # h["step_size"], h["inv_c2sqrt"]: `bias_corrections` at t
        m, v = state
        w = h["one_minus_beta1"]
        m = fma(m, w, g - m) if kind == "adam" else torch.lerp(m, g, w)  # exp_avg.lerp_(g, w)
        v = fma(h["beta2"] * v, h["one_minus_beta2"] * g, g)
        denom = v.sqrt() * h["inv_c2sqrt"] + h["eps"]
        return x + (-h["step_size"] * m) / denom, (m, v)  # param.addcdiv_(m, denom, value=-ss)

    return adam


# tensors of optimizer state per coordinate row, by kind
STATE_SIZE = {
    **{"gd": 0, "sgd": 1, "adagrad": 1, "rmsprop": 1, "rmsprop_momentum": 2},
    **{"adam": 2, "adam_lerp": 2},
}


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
