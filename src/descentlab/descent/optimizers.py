"""Optimizer names mapped to the real `torch.optim` classes, plus the example's hand-written step.

The contract (docs/optimizers.md): for every optimizer class and every point, a descent gives
the trajectory that point has when it runs alone, as a ``(d,)`` parameter, in a plain torch
loop with the same class and arguments; or it refuses in one line.

Two ways keep it. A class *proven* element-wise (torch.optim's own, and the third-party classes
tests/descent/test_every_optimizer.py proves, at their tested version) moves a whole batch as
one ``(N, d)`` tensor: every row then moves as if alone. Every other class, and a proven
third-party class given settings the proof did not cover, runs *per point*: each point a
``(d,)`` tensor with its own optimizer, which is the lone run by construction. A probe cannot
prove a class element-wise (a clip only above a threshold, a maximum taken after ten steps, a
``(1, d)`` matrix treated unlike a ``(d,)`` vector), so no probe decides it.

How a class wants to be called is found by trying (`how_to_call`): a plain ``step()``, a closure
returning the loss as a float (AliG; L-BFGS and SAM take it too), one returning it as a tensor,
or a gradient that carries its graph (``create_graph=True``: AdaHessian, SophiaH).

>>> plan = resolve("momentum", lr=0.1)
>>> plan.cls.__name__, plan.kwargs["momentum"], plan.batched
('SGD', 0.9, True)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import OptimizerError, UnknownNameError, check_positive
from .newton import Newton, closure_loss


class GradientDescent(torch.optim.Optimizer):
    """Plain gradient descent exactly as the examples write it: ``x -= lr * x.grad``.

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

# torch classes that update each tensor entry from that entry's own history only, whatever
# their settings (read in torch's source; checked against lone runs by the tests)
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
    Newton,  # a Hessian per row
}

# third-party classes proven element-wise by tests/descent/test_every_optimizer.py: a batch
# equals each point run alone as a (d,) vector to 1e-12, at lr 1e-3 and 0.1, at 30 and 300
# steps, from starts at mixed scales. Read in their source too: classes whose step reduces over
# a tensor or treats a matrix apart (projections, subset norms, low-rank updates) are left out
# even where the test could not catch them. Trusted only at the version proven, and with the
# settings the proof varied (`_PROVEN_KWARGS`).
PROVEN = {
    "pytorch_optimizer": (
        "4.1.",
        frozenset(
            [
                "ADOPT",
                "AdEMAMix",
                "AdaBelief",
                "AdaDelta",
                "AdaMax",
                "AdaMod",
                "AdaPNM",
                "AdaSmooth",
                "AdamC",
                "AdamG",
                "Adan",
                "Ano",
                "BCOS",
                "DiffGrad",
                "EXAdam",
                "EmoLynx",
                "EmoNavi",
                "FOCUS",
                "FTRL",
                "Grams",
                "GrokFastAdamW",
                "Kate",
                "LaProp",
                "Lion",
                "PAdam",
                "QHAdam",
                "RAdam",
                "ScheduleFreeAdamW",
                "ScheduleFreeRAdam",
                "SignSGD",
                "SimplifiedAdEMAMix",
                "Tiger",
                "VSGD",
                "Yogi",
            ]
        ),
    )
}
_PROVEN_KWARGS = frozenset({"lr", "betas", "eps"})
CALLINGS = ("plain", "float closure", "closure", "create_graph")


def proven_elementwise(cls: type, kwargs: dict) -> bool:
    """Whether a batch of this class, with these settings, moves each row as if alone."""
    if cls in _ELEMENTWISE_CLASSES:
        return True
    package = cls.__module__.split(".")[0]
    if package not in PROVEN or not set(kwargs) <= _PROVEN_KWARGS:
        return False
    version, classes = PROVEN[package]
    return cls.__name__ in classes and _version(package).startswith(version)


@functools.lru_cache(maxsize=8)
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def names() -> list[str]:
    """Registered optimizer names (aliases not included)."""
    return list(REGISTRY)


@dataclass(frozen=True)
class OptimizerPlan:
    """What `descend` needs to build optimizers: class, keyword arguments, how to run.

    `batched`: the class is proven element-wise with these settings, so a batch is one
    ``(N, d)`` tensor; otherwise each point is a ``(d,)`` tensor with its own optimizer.
    `calling`: how its ``step`` is called, one of `CALLINGS`."""

    name: str
    cls: type[torch.optim.Optimizer]
    kwargs: dict
    batched: bool
    calling: str | None = "plain"  # None: not known yet (`ready` finds it)

    @property
    def lr(self) -> float:
        return self.kwargs.get("lr", float("nan"))

    @property
    def needs_closure(self) -> bool:
        return self.calling in ("closure", "float closure")

    def build(self, params) -> torch.optim.Optimizer:
        try:
            return self.cls(params, **self.kwargs)
        except Exception as exc:  # a third-party constructor may fail in any way
            raise OptimizerError(f"cannot build {self.name}: {first_line(exc)}") from None


def _check_settings(plan: OptimizerPlan) -> None:
    """The class's own checks of its settings, before any run (the compiled engine never
    builds the optimizer, and met a beta of 2 as a complex square root). torch.optim's classes
    check their settings before they take parameters, so an empty list stops each just after:
    building one with a parameter would import torch._dynamo (a second, in a process that the
    C loop otherwise spares it)."""
    try:
        plan.cls([], **plan.kwargs)
    except ValueError as exc:
        if "empty parameter list" not in str(exc):
            raise OptimizerError(f"cannot build {plan.name}: {first_line(exc)}") from None
    except Exception as exc:  # a wrong type, say
        raise OptimizerError(f"cannot build {plan.name}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


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
        calling = "closure" if entry.needs_closure else "plain"
        plan = OptimizerPlan(key, entry.cls, kwargs, entry.elementwise, calling)
        _check_settings(plan)
        return plan
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        kwargs = dict(hyper)
        if lr is not None:
            kwargs["lr"] = lr
        _check_kwargs(optimizer.__name__, optimizer, kwargs)
        plan = OptimizerPlan(
            optimizer.__name__, optimizer, kwargs, proven_elementwise(optimizer, kwargs)
        )
        plan.build([torch.zeros(2, requires_grad=True)])  # its constructor's own error, now
        if optimizer in _ELEMENTWISE_CLASSES:
            return plan
        return dataclasses.replace(plan, calling=None)
    if isinstance(optimizer, torch.optim.Optimizer):
        raise OptimizerError(
            "pass the optimizer class (e.g. torch.optim.Adam) and its settings, not an instance; "
            "descentlab builds one for its own parameter tensor"
        )
    raise OptimizerError(
        f"optimizer must be a name or a torch.optim.Optimizer subclass, got {optimizer!r}"
    )


CLOSURES = {"plain": False, "float closure": True, "closure": True, "create_graph": False}


def step_with(opt: torch.optim.Optimizer, how: str, closure: Callable[[], torch.Tensor]):
    """One ``opt.step`` called the way `how` (one of `CALLINGS`) says; `closure` evaluates f
    at the parameter, sets its gradient and returns the loss."""
    if how == "closure":
        return opt.step(closure)
    if how == "float closure":
        return opt.step(lambda: float(closure()))
    return opt.step()


def ready(plan: OptimizerPlan, dtype: torch.dtype = torch.float32) -> OptimizerPlan:
    """`plan` with its `calling` found (`how_to_call`), for points of `dtype`."""
    if plan.calling is not None:
        return plan
    frozen = tuple(sorted(plan.kwargs.items(), key=str))
    try:
        how = how_to_call(plan.cls, frozen, dtype)
    except TypeError:  # a setting that cannot be hashed (a list): found again, uncached
        how = how_to_call.__wrapped__(plan.cls, frozen, dtype)
    return dataclasses.replace(plan, calling=how)


@functools.lru_cache(maxsize=64)
def how_to_call(cls: type, frozen_kwargs: tuple, dtype: torch.dtype) -> str:
    """How a class wants its step called, found by trying each of `CALLINGS` in turn for
    three steps on a lone ``(2,)`` point of a quadratic, in `dtype` (the random number
    generators left as they were). A class that no way suits is refused in one line, with
    its own error for a plain step."""
    plan = OptimizerPlan(cls.__name__, cls, dict(frozen_kwargs), batched=False)
    errors = []
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for how in CALLINGS:
            x = torch.tensor([1.0, -2.0], dtype=dtype, requires_grad=True)
            opt = plan.build([x])

            def closure(how=how, x=x, opt=opt):
                with torch.enable_grad():
                    opt.zero_grad()
                    loss = (torch.tensor([1.0, 3.0], dtype=dtype) * x**2 + 0.3 * x).sum()
                    loss.backward(create_graph=how == "create_graph")
                return loss

            try:
                for _ in range(3):
                    closure()
                    step_with(opt, how, closure)
                if torch.isfinite(x).all():
                    return how
                errors.append(f"{how}: non-finite")
            except Exception as exc:  # a third-party optimizer may fail in any way
                errors.append(first_line(exc))
    raise OptimizerError(
        f"{cls.__name__} cannot step one point held as a (d,) vector, as descentlab runs it: "
        f"{errors[0]}"
    )
