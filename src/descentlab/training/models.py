"""Small models: a polynomial, a linear layer, a multi-layer perceptron, and the example's style of
a plain function ``f(x, params)`` with a parameter vector.

>>> Polynomial(2)(torch.tensor([0.0, 1.0, 2.0])).shape
torch.Size([3])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from ..errors import DescentError, UnknownNameError


class FunctionModel(nn.Module):
    """``f(x, params)`` with a learnable parameter vector, as example 002 writes its quadratic."""

    def __init__(self, f: Callable, params: int | torch.Tensor):
        super().__init__()
        if isinstance(params, torch.Tensor):
            init = params.detach().clone().float()
        elif isinstance(params, int) and not isinstance(params, bool) and params > 0:
            init = torch.randn(params)
        else:
            raise DescentError(
                f"params must be a parameter count > 0 or a tensor of initial values, "
                f"got {params!r}"
            )
        self.f = f
        self.params = nn.Parameter(init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x, self.params)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.params.copy_(torch.randn_like(self.params))


class Polynomial(nn.Module):
    """``a_n t^n + … + a_1 t + a_0`` with coefficients highest degree first, like the example's
    ``a*t**2 + b*t + c``; initialized from a standard normal as the example does."""

    def __init__(self, degree: int):
        super().__init__()
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
            raise DescentError(f"degree must be an integer >= 0, got {degree!r}")
        self.degree = degree
        self.params = nn.Parameter(torch.randn(degree + 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(t.shape[0]) if t.ndim == 2 and t.shape[1] == 1 else t
        powers = torch.arange(self.degree, -1, -1, dtype=t.dtype, device=t.device)
        return (t[..., None] ** powers * self.params).sum(-1)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.params.copy_(torch.randn_like(self.params))


class Linear(nn.Sequential):
    """A linear layer on flattened inputs: logistic/softmax regression for classes."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__(nn.Flatten(), nn.Linear(n_in, n_out))


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Sequential):
    """Linear layers with ReLU (or ``activation="tanh"``, ...) between them:
    ``MLP(784, 64, 10)``."""

    def __init__(self, *sizes: int, activation: str = "relu"):
        if len(sizes) < 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes
        ):
            raise DescentError(f"MLP needs at least an input and an output size, got {sizes}")
        if activation not in ACTIVATIONS:
            raise UnknownNameError("activation", activation, ACTIVATIONS)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)


def reset(model: nn.Module) -> None:
    """Re-initialize every submodule that knows how (torch layers and the models above)."""
    for m in model.modules():
        if m is not model or not isinstance(model, nn.Sequential):
            fn = getattr(m, "reset_parameters", None)
            if callable(fn):
                fn()
