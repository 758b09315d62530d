"""Optimizer names mapped to the real `torch.optim` classes, plus the seed's hand-written step.

A batch of N descents is one ``(N, d)`` parameter tensor. Element-wise optimizers (SGD,
Adam, RMSprop, ...) then update every row exactly as if it ran alone. Optimizers that couple
the entries of a tensor (L-BFGS's line search and history, per-tensor norms, factored second
moments) would silently mix the points, so they run point by point. Any
`torch.optim.Optimizer` subclass is accepted as is; one that descentlab does not know is
probed once on a tiny batch, and run point by point if rows influence each other.

>>> plan = resolve("momentum", lr=0.1)
>>> plan.cls.__name__, plan.kwargs["momentum"]
('SGD', 0.9)
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from ..errors import OptimizerError, UnknownNameError, check_positive
from .newton import Newton, closure_loss


class GradientDescent(torch.optim.Optimizer):
    """Plain gradient descent exactly as the seeds write it: ``x -= lr * x.grad``.

    Equal to ``torch.optim.SGD(params, lr)``; kept so the textbook step is visible in code.

    >>> x = torch.tensor([3.0], requires_grad=True)
    >>> opt = GradientDescent([x], lr=0.1)
    >>> (x**2).sum().backward(); opt.step(); x
    tensor([2.4000], requires_grad=True)
    """

    def __init__(self, params, lr: float = 0.01):
        check_positive("lr", lr)
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p -= group["lr"] * p.grad
        return loss


@dataclass(frozen=True)
class _Entry:
    cls: type[torch.optim.Optimizer]
    defaults: dict = field(default_factory=dict)
    lr: float = 0.01
    elementwise: bool = True
    needs_closure: bool = False
    summary: str = ""


Opt = torch.optim
REGISTRY: dict[str, _Entry] = {
    "gd": _Entry(Opt.SGD, summary="plain gradient descent, x -= lr * grad"),
    "momentum": _Entry(Opt.SGD, {"momentum": 0.9}, summary="heavy-ball momentum 0.9"),
    "nesterov": _Entry(
        Opt.SGD, {"momentum": 0.9, "nesterov": True}, summary="Nesterov momentum 0.9"
    ),
    "adagrad": _Entry(Opt.Adagrad, summary="per-coordinate rates from summed squared gradients"),
    "rmsprop": _Entry(Opt.RMSprop, summary="per-coordinate rates from a moving RMS of gradients"),
    "adam": _Entry(Opt.Adam, summary="momentum + RMS scaling with bias correction"),
    "adamw": _Entry(Opt.AdamW, summary="Adam with decoupled weight decay"),
    "adamax": _Entry(Opt.Adamax, summary="Adam with an infinity-norm second moment"),
    "nadam": _Entry(Opt.NAdam, summary="Adam with Nesterov momentum"),
    "radam": _Entry(Opt.RAdam, summary="Adam with a rectified warm-up of the variance"),
    "adadelta": _Entry(Opt.Adadelta, lr=1.0, summary="rates from running averages of updates"),
    "rprop": _Entry(Opt.Rprop, summary="sign-based steps with adaptive sizes"),
    "newton": _Entry(
        Newton, lr=1.0, summary="x -= lr * H^-1 grad, f's exact Hessian per point (torch.func)"
    ),
    "lbfgs": _Entry(
        Opt.LBFGS,
        # one iteration a step; 25 evaluations a step for a line search (torch's default
        # max_eval is max_iter * 5 / 4, which with one iteration left strong_wolfe none)
        {"max_iter": 1, "max_eval": 25, "history_size": 10},
        lr=1.0,
        elementwise=False,
        needs_closure=True,
        summary="quasi-Newton; couples coordinates, so run point by point",
    ),
}
ALIASES = {"sgd": "gd", "gradient_descent": "gd", "l_bfgs": "lbfgs"}

# torch classes known to update each tensor entry from that entry's own history only.
_ELEMENTWISE_CLASSES = {
    Opt.SGD,
    Opt.Adam,
    Opt.AdamW,
    Opt.Adamax,
    Opt.NAdam,
    Opt.RAdam,
    Opt.Adagrad,
    Opt.RMSprop,
    Opt.Adadelta,
    Opt.Rprop,
    Opt.ASGD,
    GradientDescent,
}


def names() -> list[str]:
    """Registered optimizer names (aliases not included)."""
    return list(REGISTRY)


@dataclass(frozen=True)
class OptimizerPlan:
    """What `descend` needs to build optimizers: class, keyword arguments, how to run."""

    name: str
    cls: type[torch.optim.Optimizer]
    kwargs: dict
    elementwise: bool
    needs_closure: bool

    @property
    def lr(self) -> float:
        return self.kwargs.get("lr", float("nan"))

    def build(self, params) -> torch.optim.Optimizer:
        try:
            return self.cls(params, **self.kwargs)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise OptimizerError(f"cannot build {self.name}: {exc}") from None


def state_tensors(plan: OptimizerPlan) -> int:
    """How many tensors like the points the optimizer keeps, for memory estimates: SGD one with
    momentum, RMSprop one more with it, Adam two; other classes are counted as two (Adam's
    relatives, Adadelta, Rprop; L-BFGS keeps more but runs point by point)."""
    momentum = int(bool(plan.kwargs.get("momentum", 0.0)))
    counts = {"gd": momentum, "momentum": momentum, "nesterov": momentum}
    counts.update(adagrad=1, rmsprop=1 + momentum, adam=2)
    return counts.get(plan.name, 2)


@functools.lru_cache(maxsize=256)  # a class's signature does not change
def _accepted(cls: type) -> frozenset[str] | None:
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.name not in ("self", "params"))


def accepted_hyper(optimizer) -> set[str] | None:
    """Keyword arguments an optimizer (name or class) takes; None when it cannot be told."""
    if isinstance(optimizer, str):
        key = ALIASES.get(optimizer.strip().lower(), optimizer.strip().lower())
        entry = REGISTRY.get(key)
        return _accepted(entry.cls) if entry else None
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return _accepted(optimizer)
    return None


def _check_kwargs(name: str, cls: type, kwargs: dict) -> None:
    accepted = _accepted(cls)
    if accepted is None:
        return
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"it takes {', '.join(sorted(accepted))}"
            )
            raise OptimizerError(f"{name} does not take {key!r}; {hint}")


def resolve(
    optimizer: str | type[torch.optim.Optimizer], lr: float | None = None, **hyper
) -> OptimizerPlan:
    """Turn a name or an Optimizer class plus hyper-parameters into an `OptimizerPlan`.

    Args:
        optimizer: a registered name (``"adam"``), an alias (``"sgd"``), or any
            `torch.optim.Optimizer` subclass.
        lr: learning rate; None takes the registry's default (0.01; 1.0 for adadelta/lbfgs).
        **hyper: passed to the optimizer (``momentum=0.9``, ``betas=(0.9, 0.99)``, ...).
    """
    check_positive("lr", lr)
    if isinstance(optimizer, str):
        key = optimizer.strip().lower().replace("-", "_")
        key = ALIASES.get(key, key)
        entry = REGISTRY.get(key)
        if entry is None:
            raise UnknownNameError("optimizer", optimizer, [*REGISTRY, *ALIASES])
        kwargs = {**entry.defaults, **hyper, "lr": entry.lr if lr is None else lr}
        _check_kwargs(key, entry.cls, kwargs)
        return OptimizerPlan(key, entry.cls, kwargs, entry.elementwise, entry.needs_closure)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        kwargs = dict(hyper)
        if lr is not None:
            kwargs["lr"] = lr
        _check_kwargs(optimizer.__name__, optimizer, kwargs)
        if optimizer in _ELEMENTWISE_CLASSES:
            elementwise, closure = True, False
        else:
            elementwise, closure = _probe(optimizer, tuple(sorted(kwargs.items(), key=str)))
        return OptimizerPlan(optimizer.__name__, optimizer, kwargs, elementwise, closure)
    if isinstance(optimizer, torch.optim.Optimizer):
        raise OptimizerError(
            "pass the optimizer class (e.g. torch.optim.Adam) and its settings, not an instance; "
            "descentlab builds one for its own parameter tensor"
        )
    raise OptimizerError(
        f"optimizer must be a name or a torch.optim.Optimizer subclass, got {optimizer!r}"
    )


def _run_probe(cls, kwargs: dict, x0: torch.Tensor, scale: torch.Tensor, closure_mode: bool):
    x = x0.clone().requires_grad_(True)
    opt = cls([x], **kwargs)

    def closure():
        opt.zero_grad()
        loss = (scale * x**2 + 0.3 * x).sum()
        loss.backward()
        return loss

    for _ in range(4):
        if closure_mode:
            opt.step(closure)
        else:
            closure()
            opt.step()
    return x.detach()


@lru_cache(maxsize=64)
def _probe(cls: type, frozen_kwargs: tuple) -> tuple[bool, bool]:
    """(elementwise, needs_closure) for an unknown optimizer class, found by running it.

    Rows of very different scales go through 4 steps together and one by one; any difference
    beyond rounding means the optimizer couples the rows (global norms, factored moments, ...).
    """
    kwargs = dict(frozen_kwargs)
    x0 = torch.tensor([[1.0, -2.0], [1e-3, 3e-3], [300.0, -50.0]], dtype=torch.float64)
    scale = torch.tensor([[1.0, 3.0], [0.5, 2.0], [2.0, 0.1]], dtype=torch.float64)
    closure_mode = False
    try:
        try:
            together = _run_probe(cls, kwargs, x0, scale, closure_mode)
        except TypeError:
            closure_mode = True  # e.g. L-BFGS: step() calls closure() unconditionally
            together = _run_probe(cls, kwargs, x0, scale, closure_mode)
        alone = torch.cat(
            [
                _run_probe(cls, kwargs, x0[i : i + 1], scale[i : i + 1], closure_mode)
                for i in range(3)
            ]
        )
    except Exception as exc:  # a third-party optimizer may fail in any way on the probe
        raise OptimizerError(f"{cls.__name__} failed on a small test problem: {exc}") from None
    same = torch.allclose(together, alone, rtol=1e-9, atol=1e-12, equal_nan=True)
    return same, closure_mode
