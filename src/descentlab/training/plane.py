"""A plane (or line) through a network's weights: its directions and the extent of its grid.

* `pca`: the two leading principal directions of kept weights (Li et al. 2018, section 7);
* `random_directions`: two random directions, filter-normalized (their section 4);
* `as_flat`: a direction or center given as a flat tensor or a state dict;
* `axes`: the grid's extent along each direction, from a span given or from the paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DescentError
from .functional import Weights

RESOLUTION = {2: (3, 401), 1: (3, 4001)}
INTERPOLATE_SPAN = (-0.5, 1.5)
RANDOM_SPAN = 1.0


def as_flat(given, layout: Weights, index: int | None) -> torch.Tensor:
    what = "center" if index is None else f"direction {index + 1}"
    if isinstance(given, Mapping):
        return layout.flat(given).float()
    if not isinstance(given, torch.Tensor):
        raise DescentError(
            f"{what} must be a flat tensor of {layout.total:,} numbers or a state dict, got "
            f"{type(given).__name__}"
        )
    if given.numel() != layout.total:
        raise DescentError(
            f"{what} has {given.numel():,} numbers but the model has {layout.total:,} parameters"
        )
    flat = given.detach().reshape(-1)
    flat = flat if flat.dtype == torch.float64 else flat.float()
    if index is not None and not bool(flat.abs().sum() > 0):
        raise DescentError(f"{what} is all zeros; a direction needs a length")
    return flat


def check_independent(directions: torch.Tensor) -> None:
    d = directions.double()
    d = d / d.norm(dim=1, keepdim=True)
    if len(d) == 2 and abs(float(d[0] @ d[1])) > 1 - 1e-9:
        raise DescentError("the two directions are parallel; a plane needs two independent ones")


def points_per_direction(resolution, k: int) -> int:
    lo, hi = RESOLUTION[k]
    n = (61 if k == 1 else 25) if resolution is None else resolution
    if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
        raise DescentError(f"resolution must be a whole number from {lo} to {hi}, got {n!r}")
    return n


def pca(rows: torch.Tensor, center: torch.Tensor):
    """The two leading principal directions of the kept weights around `center` (rows
    centred on their mean, as PCA does), and the share of variance each explains. From the
    K × K Gram matrix of the rows: the same singular vectors as an SVD of the K × P rows,
    without its cost for millions of weights."""
    moved = rows - center
    centred = moved - moved.mean(0)
    if len(centred) < 3:
        raise DescentError("PCA needs at least 3 kept weights")
    eigen, vectors = torch.linalg.eigh(centred @ centred.T)  # ascending
    total = float(eigen.clamp(min=0).sum())
    if total == 0:
        raise DescentError("the kept weights never moved; nothing to find directions from")
    top = eigen[-2:].flip(0).clamp(min=0)
    dirs = []
    for u in vectors[:, -2:].flip(1).T:
        d = centred.T @ u
        norm = d.norm()
        if float(norm) <= 1e-12 * math.sqrt(total):  # the path is a line: any perpendicular
            d = _perpendicular(dirs[0])
            norm = d.norm()
        dirs.append(d / norm)
    shares = tuple(float(v) / total for v in top)
    return dirs, shares


def _perpendicular(d: torch.Tensor) -> torch.Tensor:
    e = torch.zeros_like(d)
    e[int(torch.argmin(d.abs()))] = 1.0
    return e - (e @ d) * d


def random_directions(
    model, layout: Weights, center: torch.Tensor, seed: int, include_biases: bool
):
    """Two random directions, each filter scaled to the norm of the same filter in `center`
    (Li et al. 2018, section 4). Biases and normalization layers get none unless
    `include_biases`; then, like any other one-dimensional parameter (a plain parameter vector
    ``f(x, params)``), each is scaled as one filter."""
    gen = torch.Generator().manual_seed(seed)
    skipped = set() if include_biases else _biases_and_norms(model)
    dirs = []
    for _ in range(2):
        parts = []
        for name, weight in layout.filters(center):
            d = torch.randn(weight.shape, generator=gen, dtype=torch.float64)
            if name in skipped:
                d.zero_()
            else:
                rows_d = d.reshape(len(d), -1) if d.ndim > 1 else d.reshape(1, -1)
                rows_w = weight.double().reshape(rows_d.shape)
                scale = rows_w.norm(dim=1) / (rows_d.norm(dim=1) + 1e-10)
                d = (rows_d * scale[:, None]).reshape(d.shape)
            parts.append(d.reshape(-1))
        dirs.append(torch.cat(parts))
    if not bool(dirs[0].abs().sum() > 0):
        raise DescentError(
            "every parameter is a bias or a normalization layer's, which random directions "
            "leave out; pass include_biases=True"
        )
    return dirs


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def _biases_and_norms(model) -> set[str]:
    """The names of the biases and of the normalization layers' parameters."""
    out = set()
    for prefix, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS) or name == "bias":
                out.add(f"{prefix}.{name}" if prefix else name)
    return out


def filter_norms(layout: Weights, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each parameter's filter norms (one per row of a weight matrix, one per output channel
    of a convolution; the whole vector for a bias)."""
    out = {}
    for name, t in layout.filters(flat):
        out[name] = t.reshape(len(t), -1).norm(dim=1) if t.ndim > 1 else t.norm().reshape(1)
    return out


def axes(span, k: int, method: str, coords: Sequence[np.ndarray]):
    """The grid's (lo, hi) along each of the k directions: `span` as given (checked), else
    the projected paths' `coords` with a quarter of their extent as margin (±1 for random
    directions, -0.5..1.5 on the init-to-final line)."""
    if span is None:
        if method == "interpolate":
            return [INTERPOLATE_SPAN]
        if not coords or method == "random":
            return [(-RANDOM_SPAN, RANDOM_SPAN)] * k
        pts = np.concatenate([*coords, np.zeros((1, k))])
        lo, hi = pts.min(0), pts.max(0)
        width = np.maximum(hi - lo, 1e-3 * max(1.0, float(np.abs(pts).max())))
        return [
            (float(a - 0.25 * w), float(b + 0.25 * w))
            for a, b, w in zip(lo, hi, width, strict=True)
        ]
    return _span(span, k)


def _span(span, k: int):
    def bad():
        shape = "(lo, hi)" if k == 1 else "s, (lo, hi) or ((α_lo, α_hi), (β_lo, β_hi))"
        return DescentError(f"span must be {shape} with finite lo < hi, got {span!r}")

    def number(v) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad()
        return float(v)

    if isinstance(span, (int, float)) and not isinstance(span, bool):
        s = number(span)
        if not 0 < s <= 1e6:
            raise DescentError(f"span must be a half-width in (0, 1e6], got {span!r}")
        return [(-s, s)] * k
    if not isinstance(span, (list, tuple)):
        raise bad()
    if len(span) == 2 and all(not isinstance(v, (list, tuple)) for v in span):
        pairs = [span] * k
    elif len(span) == k:
        pairs = list(span)
    else:
        raise bad()
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise bad()
        lo, hi = number(pair[0]), number(pair[1])
        if not lo < hi or max(abs(lo), abs(hi)) > 1e6:
            raise bad()
        out.append((lo, hi))
    return out
