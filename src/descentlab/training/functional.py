"""A network's loss as a function of one flat weight vector, and of many at once.

A model's parameters, flattened in `named_parameters` order, are one vector of P numbers.
`Weights` turns that vector into the ``{name: tensor}`` that `torch.func.functional_call`
takes, so a loss can be evaluated at any weights without touching the model, and
`torch.func.vmap` evaluates a batch of weight vectors in one call.

`PlaneLoss` is the loss on an affine set of weights ``center + c @ directions`` (a line or a
plane): what a `Landscape` draws and what a descent on it walks. When the model begins with a
linear layer fed by the data (after parameter-free layers such as Flatten), that layer's output
is affine in the coordinates, ``H(c) = H(center) + Σ c_i (x W_iᵀ + b_i)``: it is computed once
for the center and once for each direction, not once per grid point, which takes the widest
matrix product (784 × 128 for an MNIST MLP) out of every evaluation. The result is the same
loss, to rounding.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import DescentError, MemoryNeedError, UnknownNameError
from ..memory import limit_note, memory_budget
from . import losses

# the memory one chunk of weight vectors may take while it is evaluated
CHUNK_BYTES = 256e6


class Weights:
    """The layout of a model's parameters as one flat vector (`named_parameters` order)."""

    def __init__(self, model: nn.Module):
        named = list(model.named_parameters())
        if not named:
            raise DescentError(
                f"the model ({type(model).__name__}) has no parameters; there is nothing to train"
            )
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.total = sum(self.sizes)

    def flat(self, source: nn.Module | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The flat vector of a model's parameters or of a state dict with the same names."""
        if isinstance(source, nn.Module):
            source = dict(source.named_parameters())
        missing = [n for n in self.names if n not in source]
        if missing:
            raise DescentError(
                f"the state dict lacks the model's parameter {missing[0]!r} "
                f"(it has {', '.join(list(source)[:4])}…)"
            )
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            t = torch.as_tensor(source[name]).detach()
            if t.shape != shape:
                raise DescentError(
                    f"{name} has shape {tuple(t.shape)} in the state dict but "
                    f"{tuple(shape)} in the model"
                )
            parts.append(t.reshape(-1))
        return torch.cat(parts)

    def split(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` views of a flat vector ``(P,)``."""
        chunks = torch.split(w, self.sizes, dim=-1)
        return {
            n: c.reshape(*w.shape[:-1], *s)
            for n, c, s in zip(self.names, chunks, self.shapes, strict=True)
        }

    def filters(self, w: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """``(name, view)`` of each parameter tensor of a flat vector."""
        return list(self.split(w).items())


def loss_of_weights(
    model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(w) -> loss`` of the model with flat weights ``w`` on ``(x, y)``, for autograd and
    `torch.func` (the model itself is not changed)."""
    layout = Weights(model)

    def f(w: torch.Tensor) -> torch.Tensor:
        return loss_fn(torch.func.functional_call(model, layout.split(w), (x,)), y)

    return f


@contextmanager
def evaluating(model: nn.Module):
    """The model in eval mode (normalization layers use their running statistics, dropout is
    off), put back as it was after: a loss at given weights is a function of the weights."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def activation_numel(model: nn.Module, x: torch.Tensor) -> int:
    """How many numbers one forward pass of `model` on `x` produces, all layers together (a
    measure of the memory a weight vector costs while it is evaluated)."""
    total = 0

    def count(_module, _inputs, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad(), evaluating(model):
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return total * len(x)


def _first_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear, nn.Module] | None:
    """(the parameter-free layers before it, its name, the first layer, the layers after it,
    keeping their names) when a Sequential model starts with a linear layer fed by the data;
    None otherwise."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(model.named_children())
    for i, (name, layer) in enumerate(layers):
        if isinstance(layer, nn.Linear):
            return (
                nn.Sequential(*(m for _, m in layers[:i])),
                name,
                layer,
                nn.Sequential(OrderedDict(layers[i + 1 :])),
            )
        if any(True for _ in layer.parameters()) or any(True for _ in layer.buffers()):
            return None
    return None


class PlaneLoss:
    """The loss at ``center + c @ directions`` for coordinates ``c`` of shape ``(..., k)``.

    Evaluates a whole batch of coordinates at once (`vmap` over weight vectors, chunked so a
    chunk fits in `CHUNK_BYTES`), differentiably in ``c``. Computes in `dtype` (the model's
    data are cast to it) and returns values in the coordinates' dtype.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable,
        x: torch.Tensor,
        y: torch.Tensor,
        center: torch.Tensor,
        directions: torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ):
        self.model, self.loss_fn, self.dtype = model, loss_fn, dtype
        self.layout = Weights(model)
        self.x = x.to(dtype) if x.is_floating_point() else x
        self.y = y.to(dtype) if y.is_floating_point() else y
        self.center = center.detach().to(dtype)
        self.directions = directions.detach().to(dtype)  # (k, P)
        self.k = self.directions.shape[0]
        self._shortcut = self._affine_first_layer()
        numel = activation_numel(model, x) if len(x) else 0
        itemsize = torch.finfo(dtype).bits // 8
        # a weight vector, its layers' outputs on the data, and as much again for autograd
        self.bytes_per_point = itemsize * (self.layout.total + 3 * numel)
        self.chunk = max(1, int(CHUNK_BYTES // self.bytes_per_point))

    def _affine_first_layer(self):
        parts = _first_linear(self.model)
        if parts is None:
            return None
        before, name, _, rest = parts
        first = {f"{name}.weight", f"{name}.bias"}
        with torch.no_grad(), evaluating(self.model):
            inputs = before(self.x)
        bases = []  # the layer's output at the center, then each direction's share of it
        for vector in [self.center, *self.directions]:
            split = self.layout.split(vector)
            out = inputs @ split[f"{name}.weight"].T
            bases.append(out + split[f"{name}.bias"] if f"{name}.bias" in split else out)
        keep = [n not in first for n in self.layout.names]
        index = torch.cat(
            [
                torch.arange(at, at + size)
                for at, size, k in zip(
                    _offsets(self.layout.sizes), self.layout.sizes, keep, strict=True
                )
                if k
            ]
            or [torch.zeros(0, dtype=torch.long)]
        )
        return torch.stack(bases), rest, index, Weights(rest) if index.numel() else None

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        if coords.shape[-1] != self.k:
            raise DescentError(
                f"the plane takes points with {self.k} coordinate(s), got shape "
                f"{tuple(coords.shape)}"
            )
        flat = coords.reshape(-1, self.k).to(self.dtype)
        with evaluating(self.model):
            out = [self._chunk(flat[i : i + self.chunk]) for i in range(0, len(flat), self.chunk)]
        values = torch.cat(out) if out else flat.new_zeros(0)
        return values.reshape(coords.shape[:-1]).to(coords.dtype)

    def _chunk(self, c: torch.Tensor) -> torch.Tensor:
        if self._shortcut is None:
            weights = self.center + c @ self.directions
            return self._losses(torch.func.vmap(self._predict)(weights))
        bases, rest, index, rest_layout = self._shortcut
        flat = bases.reshape(len(bases), -1)  # H(center) + c @ [H(d₁); H(d₂)], one GEMM
        hidden = torch.addmm(flat[0], c, flat[1:]).reshape(len(c), *bases.shape[1:])
        if rest_layout is None:  # the model is one linear layer
            return self._losses(rest(hidden))
        weights = self.center[index] + c @ self.directions[:, index]

        def predict(w, h):
            return torch.func.functional_call(rest, rest_layout.split(w), (h,))

        return self._losses(torch.func.vmap(predict)(weights, hidden))

    def _losses(self, preds: torch.Tensor) -> torch.Tensor:
        """The loss of each model's predictions ``(B, n, ...)``: (B,)."""
        many = losses.OF_MANY.get(self.loss_fn)
        if many is not None:
            return many(preds, self.y)
        return torch.func.vmap(lambda p: self.loss_fn(p, self.y))(preds)

    def _predict(self, w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, self.layout.split(w), (self.x,))

    def at_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """The loss at each of ``(K, P)`` flat weight vectors (any point, on the plane or not)."""
        flat = weights.detach().to(self.dtype)
        with evaluating(self.model):
            out = [
                self._losses(torch.func.vmap(self._predict)(flat[i : i + self.chunk]))
                for i in range(0, len(flat), self.chunk)
            ]
        return torch.cat(out) if out else flat.new_zeros(0)


def _offsets(sizes: list[int]) -> list[int]:
    """Where each parameter starts in the flat vector."""
    out, at = [], 0
    for size in sizes:
        out.append(at)
        at += size
    return out


def check_grid_memory(points: int, plane: PlaneLoss, max_memory: float | None = None) -> None:
    """Refuse a grid whose values, or one chunk of whose evaluation, would not fit."""
    budget = memory_budget(max_memory)
    itemsize = torch.finfo(plane.dtype).bits // 8
    need = points * itemsize + min(points, plane.chunk) * plane.bytes_per_point
    if need > budget:
        side = max(2, int(math.sqrt(max(1.0, (budget - plane.bytes_per_point) / itemsize))))
        raise MemoryNeedError(
            f"a grid of {points:,} weight vectors needs {_size(need)} but {_size(budget)} is "
            f"available{limit_note(budget)}; use a resolution of at most {side}"
        )


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def data_of(learn, data):
    """``(x, y, name)`` of a Learner's ``"train"`` or ``"valid"`` data, or of ``(x, y)`` given."""
    if isinstance(data, str):
        if data == "train":
            return learn.x, learn.y, "train"
        if data == "valid":
            if not learn.has_valid:
                raise DescentError("this Learner has no validation split; use data='train'")
            return learn.x_valid, learn.y_valid, "valid"
        raise UnknownNameError("data", data, ("train", "valid"))
    try:
        x, y = data
        x, y = torch.as_tensor(x), torch.as_tensor(y)
    except (TypeError, ValueError):
        raise DescentError("data must be 'train', 'valid' or (x, y) tensors") from None
    if len(x) != len(y) or len(x) == 0:
        raise DescentError(f"data has {len(x)} inputs and {len(y)} targets; give as many of each")
    return (x.float() if x.is_floating_point() else x), y, "given"
