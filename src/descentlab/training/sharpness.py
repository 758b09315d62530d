"""Sharpness: the largest eigenvalue of the loss's Hessian, against the step size's limit.

On a quadratic with curvature λ, gradient descent at rate η is stable only while λ < 2/η.
Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at the Edge of
Stability") found that full-batch gradient descent on a network raises its sharpness until it
reaches about 2/η, then keeps it there while the loss still falls, unevenly. This module
measures it without forming the Hessian: Hessian-vector products by forward-over-reverse
differentiation (`torch.func.jvp` of `torch.func.grad`), and the Lanczos method, which finds the
largest eigenvalue in a few tens of products.

>>> import torch
>>> H = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
>>> round(top_eigenvalue(lambda v: H @ v, 3, dtype=torch.float64).value, 10)
3.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ..errors import DescentError
from .callbacks import Callback
from .functional import Weights, data_of, evaluating, loss_of_weights

TOL = 1e-3  # relative: the Lanczos residual bound on the top eigenvalue
ITERATIONS = 100


def hvp(f: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor):
    """``v -> H v``, the Hessian of `f` at `w` times a vector (forward-over-reverse)."""
    gradient = torch.func.grad(f)

    def product(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(gradient, (w,), (v,))[1]

    return product


class Eigen(NamedTuple):
    """The top eigenvalue found, the products it took, and its (Ritz) eigenvector."""

    value: float
    products: int
    vector: torch.Tensor


def top_eigenvalue(
    product: Callable[[torch.Tensor], torch.Tensor],
    size: int,
    *,
    tol: float = TOL,
    iterations: int = ITERATIONS,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    start: torch.Tensor | None = None,
) -> Eigen:
    """The largest eigenvalue of a symmetric operator given as ``v -> A v``, by Lanczos with
    full reorthogonalization.

    Stops when the residual bound ``β·|s_last|`` of the top Ritz value (an upper bound on its
    distance to an eigenvalue of A) is below ``tol`` times its size, when the Krylov space is
    exhausted (exact, as for a small linear model), or after `iterations`. `start`: the first
    vector (the previous eigenvector, when the operator changed a little); else random from
    `seed`.
    """
    if start is not None and start.numel() == size and bool(start.norm() > 0):
        q = start.detach().to(dtype).clone()
    else:
        gen = torch.Generator().manual_seed(seed)
        q = torch.randn(size, generator=gen, dtype=torch.float64).to(dtype)
    q = q / q.norm()
    basis = [q]
    diag: list[float] = []
    off: list[float] = []
    vectors = np.ones((1, 1))
    for j in range(min(iterations, size)):
        z = product(basis[j]).detach()
        if not bool(torch.isfinite(z).all()):
            raise DescentError(
                "the Hessian-vector product is not finite at these weights (the loss is nan or "
                "infinite there)"
            )
        a = float(z.double() @ basis[j].double())
        diag.append(a)
        stack = torch.stack(basis)
        for _ in range(2):  # twice is enough (Kahan's "twice is enough")
            z = z - stack.T @ (stack @ z)
        b = float(z.norm())
        ritz, vectors = np.linalg.eigh(_tridiagonal(diag, off))
        value, s_last = float(ritz[-1]), float(vectors[-1, -1])
        scale = max(abs(value), 1e-30)
        if b <= 1e-10 * max(scale, abs(a)) or b * abs(s_last) <= tol * scale:
            break
        off.append(b)
        basis.append(z / b)
    top = torch.as_tensor(vectors[:, -1], dtype=torch.float64)
    vector = (torch.stack(basis[: len(diag)]).double().T @ top).to(dtype)
    return Eigen(value, len(diag), vector)


def _tridiagonal(diag: list[float], off: list[float]) -> np.ndarray:
    t = np.diag(np.asarray(diag, dtype=np.float64))
    if off:
        idx = np.arange(len(off))
        t[idx, idx + 1] = off
        t[idx + 1, idx] = off
    return t


def sharpness(
    learn,
    data="train",
    *,
    tol: float = TOL,
    iterations: int = ITERATIONS,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    start: torch.Tensor | None = None,
) -> float:
    """The largest eigenvalue of the Hessian of the learner's loss at its current weights, on
    its training data (or ``"valid"``, or ``(x, y)``), to `tol` relative (`start`: a first
    vector for Lanczos; the learner keeps the last eigenvector and starts the next
    measurement of a fit from it)."""
    x, y, _ = data_of(learn, data)
    layout = Weights(learn.model)
    dtype = dtype or next(learn.model.parameters()).dtype
    w = layout.flat(learn.model).to(dtype)
    if x.is_floating_point():
        x = x.to(dtype)
    if y.is_floating_point():
        y = y.to(dtype)
    f = loss_of_weights(learn.model, learn.loss_fn, x, y)
    with evaluating(learn.model):
        found = top_eigenvalue(
            hvp(f, w),
            layout.total,
            tol=tol,
            iterations=iterations,
            seed=seed,
            dtype=dtype,
            start=start,
        )
    learn._eigenvector = found.vector
    return found.value


def threshold(plan, lr: float) -> tuple[float, str]:
    """The sharpness above which a step of this optimizer at rate `lr` is unstable on a
    quadratic, and its formula: 2/η for gradient descent, (2 + 2β)/η with heavy-ball momentum β,
    (2 + 2β)/(η(1 + 2β)) with Nesterov's (Cohen et al. 2021, appendix). Adaptive optimizers
    have no such fixed line; theirs is 2/η too, as a reference only."""
    beta = float(plan.kwargs.get("momentum", 0.0) or 0.0)
    if plan.kwargs.get("nesterov"):
        return (2 + 2 * beta) / (lr * (1 + 2 * beta)), f"(2+2β)/(η(1+2β)), β={beta:g}"
    if beta:
        return (2 + 2 * beta) / lr, f"(2+2β)/η, β={beta:g}"
    return 2 / lr, "2/η"


class Sharpness(Callback):
    """Measure the sharpness every `every` steps of a fit (and at its start and end), on the
    training data or `data`; kept in ``learn.history["sharpness"]`` as (step, sharpness, lr)."""

    order = 70  # after the step's schedule

    def __init__(self, every: int, data="train", tol: float = TOL, iterations: int = ITERATIONS):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise DescentError(f"sharpness every k steps needs a whole k >= 1, got {every!r}")
        self.every, self.data, self.tol, self.iterations = every, data, tol, iterations

    def _measure(self, learn) -> None:
        rows = learn.history["sharpness"]
        if rows and rows[-1][0] == learn.steps_done:
            return
        # the Hessian changes little between measurements: start from the last eigenvector
        start = getattr(learn, "_eigenvector", None) if rows else None
        value = sharpness(learn, self.data, tol=self.tol, iterations=self.iterations, start=start)
        rate = learn.history["lr"][-1] if learn.history["lr"] else learn.lr  # the step's own
        rows.append((learn.steps_done, value, rate))

    def before_fit(self, learn):
        self._measure(learn)

    def after_batch(self, learn):
        if learn.training and learn.steps_done % self.every == 0:
            self._measure(learn)

    def after_fit(self, learn):
        if learn.steps_done:
            self._measure(learn)
