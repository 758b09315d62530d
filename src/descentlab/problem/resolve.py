"""Resolve what a user passes — a name, a formula, a callable, an Objective, and starts — into
one Objective and an ``(N, d)`` tensor of starting points.

For a callable the dimension comes from its signature (``f(x, y)``), from ``dim=``, or from the
start; the call style is then probed at the first starting point (see `objective.adapt_callable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import DescentError, ObjectiveError, UnknownNameError
from . import functions, starts
from .formula import formula_objective, looks_like_formula
from .objective import Objective, adapt_callable, callable_dim


@dataclass(frozen=True)
class Problem:
    objective: Objective
    x0: torch.Tensor  # (N, d)
    single: bool  # the user gave one point, so results drop the batch axis
    grid_shape: tuple[int, ...]  # (n_y, n_x) for a 2-D grid start, else ()


def named_or_formula(f: str, dim: int | None) -> Objective:
    """A registered function by name, or a formula string; unknown bare names suggest matches."""
    if functions.normalize_name(f) in functions.REGISTRY:
        return functions.get(f, dim)
    if not looks_like_formula(f):
        raise UnknownNameError("function", f, functions.names())
    obj = formula_objective(f)
    if dim is not None and dim != obj.dim:
        raise DescentError(f"formula {f!r} has {obj.dim} variable(s) but dim={dim} was given")
    return obj


def resolve(
    f: str | Objective | Callable,
    start,
    *,
    dim: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    need_grad: bool = True,
    check: Callable[[int, int], None] | None = None,
) -> Problem:
    """`check(n, d)`, where given, is called before a grid or random start of n points is
    built (to refuse work that cannot fit before allocating the points)."""

    def points(d: int, domain):
        n = starts.count(start, d)
        if check is not None and n is not None:
            check(n, d)
        return starts.resolve(start, d, domain, dtype, device)

    if isinstance(f, Objective):
        obj = f
    elif isinstance(f, str):
        obj = named_or_formula(f, dim)
    elif callable(f):
        d = callable_dim(f) or dim or starts.declared_dim(start)
        if d is None:
            raise ObjectiveError(
                "cannot tell the dimension of f from a grid or random start without bounds; "
                "pass dim= or bounds with one (lo, hi) per axis"
            )
        x0, single, shape = points(d, None)
        obj = adapt_callable(f, d, x0[0], need_grad=need_grad)
        return Problem(obj, x0, single, shape)
    else:
        raise ObjectiveError(
            f"f must be a function name, a formula string, a callable or an Objective, got "
            f"{type(f).__name__}"
        )
    # grids and random starts cover the function's view where it has one (Easom: the domain
    # is ±100 but everything happens within 5 of (π, π)), else its domain
    x0, single, shape = points(obj.dim, obj.view or obj.domain)
    return Problem(obj, x0, single, shape)
