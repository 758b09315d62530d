"""Losses and metrics as registries: a name maps to a function of (predictions, targets).

Losses return a scalar tensor to minimize; metrics return a float-valued tensor to report.

>>> import torch
>>> float(get("mse")(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])))
2.5
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import UnknownNameError

Tensor = torch.Tensor


def _flat(preds: Tensor, targets: Tensor) -> Tensor:
    """Regression predictions of shape (N, 1) compare with targets of shape (N,)."""
    return preds.reshape(targets.shape) if preds.numel() == targets.numel() else preds


def mae(preds: Tensor, targets: Tensor) -> Tensor:
    """Mean absolute error, the L1 norm of the example."""
    return (_flat(preds, targets) - targets).abs().mean()


def mse(preds: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error, the example's ``((preds - targets)**2).mean()``."""
    return ((_flat(preds, targets) - targets) ** 2).mean()


def rmse(preds: Tensor, targets: Tensor) -> Tensor:
    """Root mean squared error, the example's L2 norm."""
    return mse(preds, targets).sqrt()


def cross_entropy(preds: Tensor, targets: Tensor) -> Tensor:
    """Softmax cross-entropy of logits ``(N, C)`` against integer labels ``(N,)``."""
    return F.cross_entropy(preds, targets)


def binary(preds: Tensor, targets: Tensor) -> Tensor:
    """fastbook's ``mnist_loss``: sigmoid, then the distance from the right answer."""
    p = torch.sigmoid(preds.reshape(targets.shape))
    return torch.where(targets == 1, 1 - p, p).mean()


def accuracy(preds: Tensor, targets: Tensor) -> Tensor:
    """Fraction right: argmax of ``(N, C)`` logits, or ``sigmoid > 0.5`` of one output."""
    if preds.ndim == 2 and preds.shape[1] > 1:
        return (preds.argmax(dim=1) == targets).float().mean()
    return ((torch.sigmoid(preds.reshape(targets.shape)) > 0.5).long() == targets).float().mean()


def mean_absolute_deviation(values: Tensor) -> Tensor:
    """The example's MAD = Σ|xᵢ − μ| / N: how far, on average, data lie from their mean."""
    return (values - values.mean()).abs().mean()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mae": mae,
    "l1": mae,
    "mse": mse,
    "rmse": rmse,
    "cross_entropy": cross_entropy,
    "binary": binary,
}
METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "accuracy": accuracy,
    "mae": mae,
    "rmse": rmse,
    "mse": mse,
}


def _cross_entropy_of_many(preds: Tensor, targets: Tensor) -> Tensor:
    """`cross_entropy` of many models' logits ``(B, N, C)`` at once, one value per model:
    ``logsumexp(z) - z[y]``, the same formula as torch's log-softmax and NLL (to rounding),
    a few times faster on the CPU for few classes than torch's kernel under `vmap`."""
    picked = preds.gather(-1, targets.expand(preds.shape[:-1])[..., None])[..., 0]
    return (torch.logsumexp(preds, -1) - picked).mean(-1)


# losses written for a batch of models' predictions at once (a loss plane's grid)
OF_MANY: dict[Callable, Callable[[Tensor, Tensor], Tensor]] = {
    cross_entropy: _cross_entropy_of_many,
}


def get(name: str | Callable) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss by name (``mse``, ``cross_entropy``, ...), or a callable passed through."""
    if callable(name):
        return name
    fn = LOSSES.get(str(name).lower().replace("-", "_"))
    if fn is None:
        raise UnknownNameError("loss", str(name), LOSSES)
    return fn


def metric(name: str | Callable) -> tuple[str, Callable[[Tensor, Tensor], Tensor]]:
    """(name, function) of a metric given by name or as a callable."""
    if callable(name):
        return getattr(name, "__name__", "metric"), name
    fn = METRICS.get(str(name).lower())
    if fn is None:
        raise UnknownNameError("metric", str(name), METRICS)
    return str(name).lower(), fn
