"""`Objective`: a function to minimize, and the adapter that turns what a user passes into one.

An Objective's `fn` maps a `(..., d)` tensor of points to a `(...)` tensor of values, so one
call evaluates a whole batch. A user may pass

* a registered name (``"himmelblau"``) or a formula string (``"x**2 + y**2"``),
* a callable written scalar-style (``lambda x: 1.2*x**2 + 4``, for d = 1),
* a callable with one argument per coordinate (``def f(x, y)``),
* a callable over a ``(..., d)`` tensor (``lambda p: (p**2).sum(-1)``),
* a callable over one point ``(d,)`` (``lambda p: p[0]**2 + p[1]**2``), run with ``vmap``.

`as_objective` tries these call styles on a few probe points and keeps the first whose output
has one value per point and agrees row by row with single-point calls, so a function that
mixes points (``p[0]`` on a batch) is never silently accepted.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import ObjectiveError, StartError

Bounds = tuple[tuple[float, float], ...]


@dataclass(frozen=True, eq=False)
class Objective:
    """A function of d variables to minimize, with what is known about it.

    Args:
        fn: maps a ``(..., d)`` tensor to a ``(...)`` tensor of values.
        dim: number of variables d.
        name: short name (the registry name for built-ins).
        domain: ``((lo, hi),) * d`` search box, or None when unknown.
        minima: every known global minimizer, each a tuple of d floats.
        minimum_value: the global minimum f*, or None when unknown.
        formula: the formula as text, for display.
        reference: where the function is defined.
        view: a smaller box for pictures when the domain hides the features (Easom).

    Example:
        >>> obj = Objective(lambda x: (x**2).sum(-1), dim=2, name="sphere")
        >>> float(obj([3.0, 4.0]))
        25.0
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    name: str = "f"
    domain: Bounds | None = None
    minima: tuple[tuple[float, ...], ...] = ()
    minimum_value: float | None = None
    formula: str = ""
    reference: str = ""
    view: Bounds | None = None  # a box that shows the interesting part, when the domain does not
    style: str = field(default="batch", repr=False)  # how a user callable is called
    # the user's callable that `fn` calls in that style (None when fn is given as it is): a
    # compiled kernel is kept by it, since each run wraps it anew
    origin: Callable | None = field(default=None, repr=False, compare=False)

    def __call__(self, x) -> torch.Tensor:
        """Evaluate at one point ``(d,)`` or many ``(..., d)``; array-likes become float64."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x, dtype=torch.float64)
        if self.dim == 1 and (x.ndim == 0 or x.shape[-1] != 1):
            x = x.unsqueeze(-1)
        if x.shape[-1] != self.dim:
            raise ObjectiveError(
                f"{self.name} takes points of dimension {self.dim}, got shape {tuple(x.shape)}"
            )
        return self.fn(x)

    def surface(self, box, n: int = 240):
        """f on an n × n grid over ``box = ((x_lo, x_hi), (y_lo, y_hi))`` for a picture:
        ``(xs, ys, z)`` as numpy arrays, ``z[j, i] = f(xs[i], ys[j])``. An objective that
        holds its own grid (a network's `Landscape`) answers from it."""
        (x0, x1), (y0, y1) = box
        xs = torch.linspace(x0, x1, n, dtype=torch.float64)
        ys = torch.linspace(y0, y1, n, dtype=torch.float64)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        with torch.no_grad():
            z = self.fn(torch.stack([gx, gy], -1))
        return xs.numpy(), ys.numpy(), z.double().numpy()

    def _repr_html_(self) -> str:
        from ..plot import display

        return display.objective(self)


def _positional_arity(f: Callable) -> int | None:
    """Number of required positional parameters, or None when it cannot be read."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def callable_dim(f: Callable) -> int | None:
    """The dimension a callable declares by its signature: its argument count when > 1."""
    n = _positional_arity(f)
    return n if n is not None and n > 1 else None


def _callers(user: Callable, dim: int, arity: int | None) -> list[tuple[str, Callable]]:
    """Candidate ways to call `user` on an ``(N, d)`` batch, most natural first."""

    def scalar(x):
        return user(x[..., 0])

    def batch(x):
        out = user(x)
        if dim == 1 and isinstance(out, torch.Tensor) and out.shape == x.shape:
            out = out[..., 0]
        return out

    def unbind(x):
        return user(*x.unbind(-1))

    def point(x):
        flat = x.reshape(-1, dim)
        one = (lambda p: user(p[0])) if dim == 1 else user
        return torch.func.vmap(one)(flat).reshape(x.shape[:-1])

    def loop(x):
        flat = x.reshape(-1, dim)
        if arity is not None and arity > 1:
            vals = [user(*p.unbind(-1)) for p in flat]
        else:
            vals = [user(p[0] if dim == 1 else p) for p in flat]
        if not all(isinstance(v, torch.Tensor) for v in vals):
            return next(v for v in vals if not isinstance(v, torch.Tensor))  # reported as such
        return torch.stack([v.reshape(()) for v in vals]).reshape(x.shape[:-1])

    if arity is not None and arity > 1:
        return [("unbind", unbind), ("loop", loop)]
    styles = [("scalar", scalar)] if dim == 1 else []
    return [*styles, ("batch", batch), ("point", point), ("loop", loop)]


def call_in_style(user: Callable, style: str, dim: int, arity: int | None = None) -> Callable:
    """The batched caller of `user` for a style chosen earlier (used for gradient callables)."""
    return dict(_callers(user, dim, arity))[style]


def _probe_points(x0: torch.Tensor, n: int) -> torch.Tensor:
    """n distinct points near x0, so shape and row-mixing mistakes show up."""
    d = x0.shape[-1]
    steps = torch.arange(n, dtype=x0.dtype, device=x0.device)[:, None]
    phase = torch.arange(1, d + 1, dtype=x0.dtype, device=x0.device)[None, :]
    return x0 + 0.01 * torch.sin(steps * phase + steps)


def _check_output(out, n: int, dim: int, need_grad: bool) -> str | None:
    """Why `out` is not one value per point with a gradient; None when it is fine."""
    if not isinstance(out, torch.Tensor):
        return (
            f"f returned {type(out).__name__}, not a torch tensor; build it from torch "
            "operations (torch.sin, not math.sin or numpy)"
        )
    if tuple(out.shape) != (n,):
        return (
            f"f returned shape {tuple(out.shape)} for {n} points of dimension {dim}; it must "
            "return one value per point (reduce over the last axis, e.g. (x**2).sum(-1))"
        )
    if need_grad and out.grad_fn is None:
        return (
            "f's value has no gradient (no grad_fn): it does not depend on x through torch "
            "operations; avoid .item(), float(), numpy and math functions, or pass grad='central'"
        )
    return None


def _agrees_row_by_row(caller: Callable, probe: torch.Tensor, out: torch.Tensor) -> bool:
    for i in (0, probe.shape[0] - 1):
        one = caller(probe[i : i + 1])
        if not isinstance(one, torch.Tensor) or one.numel() != 1:
            return False
        if not torch.allclose(
            one.reshape(()).detach(), out[i].detach(), rtol=1e-4, atol=1e-6, equal_nan=True
        ):
            return False
    return True


def adapt_callable(
    user: Callable, dim: int, x0: torch.Tensor, *, need_grad: bool = True, name: str | None = None
) -> Objective:
    """Wrap a user callable as a batched Objective, choosing how to call it by probing at x0.

    Raises:
        ObjectiveError: when no call style yields one differentiable value per point.
    """
    arity = _positional_arity(user)
    if arity is not None and arity > 1 and arity != dim:
        raise ObjectiveError(
            f"f takes {arity} arguments (one per coordinate) but the start has dimension {dim}; "
            f"give starting points with {arity} coordinates"
        )
    n = max(3, dim + 2)  # n != d, so a batch indexed as p[0] shows up as a wrong shape
    probe = _probe_points(x0.detach().reshape(dim), n).requires_grad_(need_grad)
    problems: list[tuple[int, str]] = []  # (how far the style got, why it failed)
    for style, caller in _callers(user, dim, arity):
        try:
            with torch.enable_grad() if need_grad else torch.no_grad():
                out = caller(probe)
                if not need_grad and not isinstance(out, torch.Tensor) and out is not None:
                    out = torch.as_tensor(out, dtype=probe.dtype)
                problem = _check_output(out, n, dim, need_grad)
                shaped = isinstance(out, torch.Tensor) and tuple(out.shape) == (n,)
                if shaped and not _agrees_row_by_row(caller, probe, out):
                    # one value per point, but each depends on the others: never reinterpret
                    raise ObjectiveError(
                        "f mixes the points of a batch (a point's value changes with the other "
                        "points); compute each value from its own row only, e.g. with x[..., 0]"
                    )
        except ObjectiveError:
            raise
        except Exception as exc:  # the user's function may raise anything on a wrong call style
            first = str(exc).splitlines()[0] if str(exc) else ""
            problems.append((0, f"f raised {type(exc).__name__}: {first}"))
            continue
        if problem is None:
            if style == "loop":
                warnings.warn(
                    "f cannot be vectorised over a batch (it uses Python control flow on values "
                    "or non-batched operations); evaluating point by point, which is slow for "
                    "many points",
                    stacklevel=3,
                )
            return Objective(
                fn=caller, dim=dim, name=name or _callable_name(user), style=style, origin=user
            )
        problems.append((2 if shaped else 1, problem))
    best = max(problems, key=lambda p: p[0]) if problems else (0, "f could not be evaluated")
    raise ObjectiveError(best[1])


def _callable_name(f: Callable) -> str:
    name = getattr(f, "__name__", "f")
    return "f" if name == "<lambda>" else name


def as_bounds(bounds, dim: int | None = None) -> Bounds:
    """Normalise ``(lo, hi)`` or ``[(lo, hi), ...]`` to one ``(lo, hi)`` pair per axis.

    >>> as_bounds((-5, 5), dim=2)
    ((-5.0, 5.0), (-5.0, 5.0))
    """
    try:
        pairs: Sequence = bounds
        if len(pairs) == 2 and all(isinstance(v, (int, float)) for v in pairs):
            pairs = [pairs] * (dim or 1)
        out = tuple((float(lo), float(hi)) for lo, hi in pairs)
    except (TypeError, ValueError):
        raise StartError(
            f"bounds must be (lo, hi) or one (lo, hi) pair per axis, got {bounds!r}"
        ) from None
    if dim is not None and len(out) != dim:
        raise StartError(f"bounds give {len(out)} axes but the function has dimension {dim}")
    for lo, hi in out:
        if not (lo < hi) or any(v != v or abs(v) == float("inf") for v in (lo, hi)):
            raise StartError(f"each bound needs finite lo < hi, got ({lo}, {hi})")
    return out
