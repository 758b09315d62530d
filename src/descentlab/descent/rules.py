"""The per-point stop rules every loop applies, as tensors: the gradient's norm, whether a point
is still healthy (finite, within the blow-up bound), and the default tolerance (`tol="auto"`).
The C loop writes the same rules out in C (`engine/c/source.py`)."""

from __future__ import annotations

import math

import torch

from ..problem.gradients import Evaluator
from ..status import auto_tol


def tolerance_at(objective, grad, x0: torch.Tensor, order: float) -> float:
    """`tol="auto"`: `status.auto_tol` of the median gradient norm over the starts (at most
    4,096 of them, evenly spread: a median needs no more)."""
    n = x0.shape[0]
    every = torch.arange(4096, device=x0.device) * (n - 1) // 4095
    sample = x0 if n <= 4096 else x0[every]
    _, g = Evaluator(objective, grad)(sample.clone())
    gn = gradient_norm(g.detach(), order)
    gn = gn[torch.isfinite(gn)]
    scale = float(gn.double().median()) if gn.numel() else 0.0
    info = torch.finfo(x0.dtype)
    return auto_tol(scale, info.eps, info.tiny)


def gradient_norm(g: torch.Tensor, order: float) -> torch.Tensor:
    """Per-point norm of ``(N, d)`` gradients. The max-norm is `max_abs`: the same value as
    ``linalg.vector_norm(ord=inf, dim=-1)``, which is much slower
    (benchmarks/results/loop_helpers.md)."""
    if order == math.inf:
        return max_abs(g)
    if order == 1:
        return g.abs().sum(-1)
    return torch.linalg.vector_norm(g, ord=order, dim=-1)  # no overflow from squaring


def healthy(x: torch.Tensor, v: torch.Tensor, gn: torch.Tensor, limit: float) -> torch.Tensor:
    """Per point: value and gradient norm finite, and every coordinate within `limit`; in one
    comparison, since v - v and (0 + gn) - gn are 0 when finite and NaN otherwise, and NaN
    compares false: about twice as fast as ``isfinite(v) & isfinite(gn) & (x.abs().amax(-1)
    <= limit)``; summed in place, since each fresh temporary can cost a page fault per 4 KiB
    (benchmarks/results/loop_helpers.md)."""
    spread = (v - v).to(torch.promote_types(v.dtype, torch.promote_types(gn.dtype, x.dtype)))
    spread.add_(gn).sub_(gn).add_(max_abs(x))
    return spread <= limit


def max_abs(t: torch.Tensor) -> torch.Tensor:
    """``t.abs().amax(-1)`` of an ``(N, d)`` tensor, exactly, and faster for few coordinates:
    up to 10 columns, d - 1 element-wise maxima beat a reduction over each row; beyond, the
    reduction wins (benchmarks/results/loop_helpers.md)."""
    if t.shape[-1] > 10:
        return t.abs().amax(-1)
    out = t[..., 0].abs()
    for j in range(1, t.shape[-1]):
        torch.maximum(out, t[..., j].abs(), out=out)
    return out


def _some(mask: torch.Tensor) -> bool:
    """Whether any element is set: `count_nonzero` is quicker than `any` on many bools
    (benchmarks/results/loop_helpers.md)."""
    return bool(torch.count_nonzero(mask))
