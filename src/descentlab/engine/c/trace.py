"""Step 1 of the C backend: run f (and an update rule) once on a small batch under a dispatch
mode that records every aten operation, the same operations autograd runs in the eager engine,
forward and backward. No dynamo: tracing takes milliseconds.

`Unsupported` is the backend's one refusal: whatever cannot be traced, translated, built or
checked raises it, and the engine falls back (`engine.loop_for`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# points in a traced batch: a size no other dimension of the graph has (coordinates are at most
# 64), so a dimension of this size is the points axis
TRACE_N = 97


class Unsupported(Exception):
    """The C backend cannot run this (the engine falls back to inductor, or eager).

    `lasting`: whether the same request would fail again (the translator's refusal, the
    compiler's error), so the answer may be remembered; a timeout or a full disk is not."""

    def __init__(self, why: str, lasting: bool = True):
        super().__init__(why)
        self.lasting = lasting


class _Tape(TorchDispatchMode):
    """Records every aten call (function, arguments, result), keeping the tensors alive so their
    ids stay unique."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch otherwise wraps __torch_dispatch__ in torch._disable_dynamo, whose first call
        # imports dynamo for nothing: no torch.compile runs under this mode
        return False

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # the values as they are now: an in-place operation later may change them (atanh's
        # gradient fills an empty tensor with ones, then subtracts x**2 from it in place)
        now = out.detach().clone() if isinstance(out, torch.Tensor) else None
        self.calls.append((func, args, kwargs, out, now))
        return out


def value_and_grad_traced(fn: Callable, x: torch.Tensor):
    """The eager engine's evaluation (`gradients.Evaluator`): f at ``(N, d)`` points and the
    gradient of its sum, recorded."""
    tape = _Tape()
    with tape, torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        v = fn(leaf)
        if isinstance(v, torch.Tensor) and v.requires_grad:
            (g,) = torch.autograd.grad(v.sum(), leaf)
        else:
            g = torch.zeros_like(leaf)
    return tape, leaf, v, g
