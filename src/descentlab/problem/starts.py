"""Starting points: one point, an array of points, a grid, or uniform random points.

`grid` and `random` may leave `bounds` out; `descend` then fills in the objective's domain (or
its `view`, a smaller box for the few functions whose domain hides their features, such as
Easom) and dimension. Grids list points with the first coordinate varying fastest, so a 2-D
grid's values reshape to ``(n_y, n_x)`` — the layout of contour plots.

>>> grid(3, bounds=(-1, 1)).points(2)[:4].tolist()
[[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 0.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import StartError
from ..memory import check_start_memory
from .objective import Bounds, as_bounds

MAX_GRID_POINTS = 10**9


@dataclass(frozen=True)
class Grid:
    """``n`` points per axis (an int, or one int per axis), endpoints included."""

    n: int | tuple[int, ...]
    bounds: object = None

    def points(self, dim: int, domain: Bounds | None = None, dtype=torch.float32, device="cpu"):
        box = _box(self.bounds, dim, domain, "grid")
        counts = self.counts(dim)
        if len(counts) != dim or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts
        ):
            raise StartError(f"grid needs a positive count per axis for {dim} axes, got {self.n!r}")
        total = int(np.prod(counts, dtype=np.float64))
        if total > MAX_GRID_POINTS:
            raise StartError(
                f"grid of {' x '.join(map(str, counts))} is {total:.3g} points; use fewer per "
                "axis or dl.random(n) for high dimensions"
            )
        check_start_memory("a grid", total, dim, dtype, 0)
        # written axis by axis into the points, each axis computed in float64 and broadcast
        # (a float64 meshgrid, flattened and stacked, takes several times the points' memory)
        out = torch.empty(*reversed(counts), dim, dtype=dtype)
        for c, ((lo, hi), count) in enumerate(zip(box, counts, strict=True)):
            axis = (
                torch.linspace(lo, hi, count, dtype=torch.float64)
                if count > 1
                else torch.tensor([(lo + hi) / 2], dtype=torch.float64)
            )
            shape = [1] * dim
            shape[dim - 1 - c] = count  # the first coordinate varies fastest
            out[..., c] = axis.to(dtype).view(shape)
        return out.view(-1, dim).to(device)

    def counts(self, dim: int) -> tuple[int, ...]:
        """Points per axis, first axis first."""
        return (self.n,) * dim if isinstance(self.n, int) else tuple(self.n)

    def shape(self, dim: int) -> tuple[int, ...]:
        return tuple(reversed(self.counts(dim)))


@dataclass(frozen=True)
class Random:
    """``n`` points drawn uniformly in ``bounds`` with a seeded generator."""

    n: int
    bounds: object = None
    seed: int | None = None

    def points(self, dim: int, domain: Bounds | None = None, dtype=torch.float32, device="cpu"):
        box = _box(self.bounds, dim, domain, "random")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise StartError(f"random needs a positive number of points, got {self.n!r}")
        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(self.seed))
        lo = torch.tensor([b[0] for b in box], dtype=torch.float64)
        hi = torch.tensor([b[1] for b in box], dtype=torch.float64)
        check_start_memory("a random start", self.n, dim, dtype, 8)
        u = torch.rand(self.n, dim, generator=gen, dtype=torch.float64)
        return u.mul_(hi - lo).add_(lo).to(dtype=dtype, device=device)  # lo + (hi - lo) u


def grid(n: int | tuple[int, ...], bounds=None) -> Grid:
    """A regular grid with `n` points per axis over `bounds` (default: the objective's domain).

    >>> grid(100)            # 10,000 points on a 2-D function's domain
    Grid(n=100, bounds=None)
    """
    return Grid(n, bounds)


def random(n: int, bounds=None, seed: int | None = None) -> Random:
    """`n` uniform random points in `bounds` (default: the objective's domain), seeded."""
    return Random(n, bounds, seed)


def _box(bounds, dim: int, domain: Bounds | None, what: str) -> Bounds:
    if bounds is not None:
        return as_bounds(bounds, dim)
    if domain is None:
        raise StartError(
            f"{what} starts need bounds for a function with no known domain; "
            f"pass bounds=(lo, hi) or one (lo, hi) per axis"
        )
    return domain


def count(start, dim: int) -> int | None:
    """How many points a grid or random start makes in `dim` dimensions (None for other
    starts, and for counts `points` will refuse)."""
    if isinstance(start, Random):
        return start.n if isinstance(start.n, int) and start.n >= 1 else None
    if isinstance(start, Grid):
        counts = start.counts(dim)
        if len(counts) == dim and all(isinstance(c, int) and c >= 1 for c in counts):
            total = math.prod(counts)
            return total if total <= MAX_GRID_POINTS else None
    return None


def declared_dim(start) -> int | None:
    """The dimension a start states by itself, or None when it depends on the objective."""
    if isinstance(start, (Grid, Random)):
        b = start.bounds
        if b is None:
            return None
        if len(b) == 2 and all(isinstance(v, (int, float)) for v in b):
            return None if isinstance(start, Random) or isinstance(start.n, int) else len(start.n)
        return len(b)
    arr = _as_array(start)
    return 1 if arr.ndim == 0 else int(arr.shape[-1])


def _as_array(start) -> np.ndarray:
    if isinstance(start, (str, bytes)):
        raise StartError(f"start must be numbers, got the string {start!r}")
    if isinstance(start, torch.Tensor):  # read, not written: `resolve` copies it
        t = start.detach().cpu()
        return (t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float64)).numpy()
    try:
        arr = np.asarray(start)
        if arr.dtype.kind != "f":  # float32 and float64 arrays are used as they are
            arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise StartError(
            f"start must be a number, a point (x, y, ...) or an (N, d) array, got {start!r}"
        ) from None
    if arr.ndim > 2:
        raise StartError(f"start must be a point or an (N, d) array, got shape {arr.shape}")
    return arr


def resolve(
    start, dim: int, domain: Bounds | None, dtype, device
) -> tuple[torch.Tensor, bool, tuple]:
    """Starting points as an ``(N, dim)`` tensor, whether it was one point, and a grid shape.

    A 1-D sequence is one point, except for a 1-D function, where it lists N scalar starts.
    """
    if isinstance(start, (Grid, Random)):
        pts = start.points(dim, domain, dtype, device)
        shape = start.shape(dim) if isinstance(start, Grid) else ()
        return pts, False, shape
    arr = _as_array(start)
    single = arr.ndim <= 1 and not (dim == 1 and arr.ndim == 1 and arr.size > 1)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(-1, 1) if (dim == 1 and arr.size > 1) else arr.reshape(1, -1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise StartError("start is empty; give at least one point")
    if arr.shape[1] != dim:
        raise StartError(
            f"start has {arr.shape[1]} coordinate{'s' * (arr.shape[1] != 1)} per point but the "
            f"function has dimension {dim}"
        )
    finite = np.isfinite(arr)
    if not finite.all():  # (the per-row test is slower; only needed to name the point)
        i = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise StartError(
            f"start point {i} has a non-finite coordinate ({arr[i].tolist()}); "
            "every coordinate must be a finite number"
        )
    return torch.tensor(arr, dtype=dtype, device=device), single, ()  # always a copy
