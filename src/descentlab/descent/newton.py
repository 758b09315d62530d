"""Newton's method as an optimizer: x <- x - lr * H(x)^-1 grad f(x), with f's exact Hessian.

Each row of an ``(N, d)`` parameter is a point with its own d x d Hessian (a ``(d,)`` parameter
is one point), computed for all rows at once with `torch.func` (``vmap(hessian(f))``), or row
by row with autograd where f cannot be vmapped. The step is the plain Newton step, as in d2l
(11.3): where the Hessian is indefinite it is taken anyway, towards a saddle or a maximum as the
formula says (d2l's x cos(0.15 pi x) from 10 with lr 1 ends at 26.83, not at a minimum); where
it is singular, the least-norm step of the pseudo-inverse (no move along a flat direction). A
non-finite Hessian gives a non-finite step, and the descent marks the point diverged.

>>> import descentlab as dl
>>> run = dl.descend("cosh(0.5*x)", start=10.0, optimizer="newton", lr=1.0, steps=10)
>>> abs(float(run.x)) < 1e-6
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import OptimizerError, check_positive


def closure_loss(closure: Callable[[], torch.Tensor] | None) -> torch.Tensor | None:
    """What an optimizer's ``step(closure)`` returns: the closure's loss, evaluated with
    gradients on (torch.optim's convention), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def hessians(f: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """``(n, d, d)`` Hessians of f (over ``(..., d)``) at the ``(n, d)`` rows."""
    one = lambda v: f(v).reshape(())  # noqa: E731  (a (d,) point to its value)
    with torch.enable_grad():
        try:
            return torch.func.vmap(torch.func.hessian(one))(rows)
        except Exception:  # f reads values out (float(x), .item()) or branches on them
            pass
        try:
            return torch.stack(
                [torch.autograd.functional.hessian(one, r, strict=True) for r in rows]
            )
        except Exception as exc:
            raise OptimizerError(
                f"newton needs f's Hessian, which autograd cannot give here "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}); write f "
                "with torch operations, or use another optimizer"
            ) from None


def newton_steps(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """H^-1 g per row; the pseudo-inverse's least-norm solution where H is singular."""
    out, info = torch.linalg.solve_ex(h, g.unsqueeze(-1))
    out = out.squeeze(-1)
    singular = info != 0
    if singular.any():
        out[singular] = (torch.linalg.pinv(h[singular]) @ g[singular].unsqueeze(-1)).squeeze(-1)
    return out


class Newton(torch.optim.Optimizer):
    """Newton's method (see the module). `objective` is f over ``(..., d)``; `descend` gives it."""

    def __init__(self, params, lr: float = 1.0, objective: Callable | None = None):
        check_positive("lr", lr)
        super().__init__(params, {"lr": lr})
        self.objective = objective

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = closure_loss(closure)
        if self.objective is None:
            raise OptimizerError("newton needs f for its Hessian: Newton(params, objective=f)")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows = p.detach().reshape(-1, p.shape[-1] if p.ndim else 1)
                step = newton_steps(hessians(self.objective, rows), p.grad.reshape(rows.shape))
                p.sub_(group["lr"] * step.reshape(p.shape))
        return loss
