"""Gradients three ways: autograd (default), central finite differences, or a derivative the
user wrote by hand — the example's ``dx = 2x`` power rule.

>>> float(gradient(lambda x: x**2, 1.8))                      # autograd
3.5999999046325684
>>> float(gradient(lambda x: x**2, 1.8, method="central"))    # finite differences
3.5999999046325684
>>> float(gradient(lambda x: x**2, 1.8, method=lambda x: 2 * x))
3.5999999046325684
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import DescentError, ObjectiveError
from .objective import Objective, _positional_arity, call_in_style

Method = str | Callable


class Evaluator:
    """Values and gradients of an Objective on an ``(N, d)`` batch, by one gradient method."""

    def __init__(
        self, objective: Objective, method: Method = "autograd", user: Callable | None = None
    ):
        self.objective = objective
        if callable(method):
            self.kind = "callable"
            self._grad = call_in_style(
                method, objective.style, objective.dim, _positional_arity(method)
            )
        elif method in ("autograd", "central"):
            self.kind = method
        else:
            raise DescentError(
                "grad must be 'autograd', 'central' or a callable giving the derivative, "
                f"got {method!r}"
            )

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values ``(N,)``, gradients ``(N, d)``), both detached."""
        fn = self.objective.fn
        if self.kind == "autograd":
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                v = fn(xr)
                if v.requires_grad:
                    (g,) = torch.autograd.grad(v.sum(), xr)
                else:
                    g = torch.zeros_like(xr)
            return v.detach(), g
        with torch.no_grad():
            v = torch.as_tensor(fn(x), dtype=x.dtype, device=x.device)
            if self.kind == "central":
                return v, central_difference(fn, x)
            return v, self._user_grad(x)

    def _user_grad(self, x: torch.Tensor) -> torch.Tensor:
        n, d = x.shape
        g = self._grad(x)
        if isinstance(g, (tuple, list)):
            g = torch.stack([torch.as_tensor(c, dtype=x.dtype, device=x.device) for c in g], dim=-1)
        g = torch.as_tensor(g, dtype=x.dtype, device=x.device)
        if d == 1 and g.shape == (n,):
            g = g[:, None]
        if g.shape != (n, d):
            raise ObjectiveError(
                f"the grad callable returned shape {tuple(g.shape)} for {n} points of dimension "
                f"{d}; it must return one partial derivative per coordinate, shape ({n}, {d})"
            )
        return g


def central_difference(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """Central differences ``(f(x + h e_j) - f(x - h e_j)) / 2h`` for every point and axis.

    ``h = eps**(1/3) * max(1, |x_j|)`` balances truncation and rounding error; the step actually
    taken (after rounding x ± h) is what divides, so the estimate is exact for quadratics.
    """
    n, d = x.shape
    eps = torch.finfo(x.dtype).eps
    h = eps ** (1 / 3) * torch.clamp(x.abs(), min=1.0)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    shift = h[None, :, :] * eye[:, None, :]  # (d, N, d): axis j shifted by h_j
    plus, minus = x[None] + shift, x[None] - shift
    values = fn(torch.cat([plus, minus]).reshape(2 * d * n, d)).reshape(2, d, n)
    idx = torch.arange(d, device=x.device)
    width = plus[idx, :, idx] - minus[idx, :, idx]  # (d, N): the steps really taken
    return ((values[0] - values[1]) / width).T


def gradient(f, x, method: Method = "autograd", *, dim: int | None = None) -> torch.Tensor:
    """The gradient of `f` at `x` (one point, or an ``(N, d)`` batch), shaped like `x`.

    Args:
        f: a name, formula, callable or Objective, as for `descend`.
        x: a number, a point ``(d,)`` or points ``(N, d)``; Python numbers become float32.
        method: ``"autograd"``, ``"central"``, or a callable computing the derivative by hand.

    >>> print(f"Gradient at x = 1.8: dx = {gradient(lambda x: x**2, 1.8):.2}")
    Gradient at x = 1.8: dx = 3.6
    """
    from .resolve import resolve

    dtype = x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else torch.float32
    device = x.device if isinstance(x, torch.Tensor) else "cpu"
    problem = resolve(f, x, dim=dim, dtype=dtype, device=device, need_grad=method == "autograd")
    _, g = Evaluator(problem.objective, method)(problem.x0)
    if problem.single:
        return g[0, 0] if problem.objective.dim == 1 and torch.as_tensor(x).ndim == 0 else g[0]
    return g
