"""`Spec`: everything a compiled kernel's code depends on, as one frozen value.

Two runs with equal specs run the same kernel; the C backend names its libraries by the source
a spec produces, and each backend keeps its kernels in this process by `Spec.key`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..problem import formula, functions
from ..problem.objective import Objective
from .updates import kind_of


@dataclass(frozen=True)
class Spec:
    """What a kernel is compiled for.

    Attributes:
        objective: the function (its identity, not its value, names the kernel: `key`).
        kind: the update rule (`updates.kind_of`): "gd", "sgd", "adam", ...
        nesterov: SGD's Nesterov momentum.
        d: coordinates per point.
        dtype: float32 or float64.
        order: the gradient norm's order (`math.inf`, 2 or 1).
        clamp: whether positions are clamped into bounds after each step.
        tol_set: whether a tolerance is tested at all.
        device: "cpu" or a CUDA device.
        scheduled: whether the rate changes from step to step (a schedule): the C loop then
            reads it per step.

    >>> from descentlab.problem.functions import get
    >>> Spec(get("himmelblau"), "adam", False, 2, torch.float32).key[1:4]
    ('adam', False, 2)
    """

    objective: Objective = field(compare=False, repr=False)
    kind: str
    nesterov: bool
    d: int
    dtype: torch.dtype
    order: float = math.inf
    clamp: bool = False
    tol_set: bool = False
    device: str = "cpu"
    scheduled: bool = False

    @classmethod
    def of(cls, objective: Objective, plan, d: int, dtype, device, settings) -> Spec:
        """The spec of a run: its objective, optimizer plan, shape and `descent.loop.Settings`."""
        return cls(
            objective,
            kind_of(plan),
            bool(plan.kwargs.get("nesterov", False)),
            int(d),
            dtype,
            float(settings.order),
            settings.box is not None,
            settings.tol is not None,
            str(torch.device(device)),
            getattr(settings, "rates", None) is not None,
        )

    @property
    def on_cpu(self) -> bool:
        return torch.device(self.device).type == "cpu"

    @property
    def named(self) -> tuple | None:
        """How the objective is known across runs: a registered function's name or a formula's
        text; None for a callable, whose identity does not outlive it."""
        objective = self.objective
        if objective.style != "batch":
            return None
        if isinstance(objective.fn, formula.Formula):
            return ("formula", objective.fn.text)
        spec = functions.REGISTRY.get(objective.name)
        if spec is not None and spec.fn is objective.fn:
            return ("function", objective.name)
        return None

    @property
    def function(self):
        """The callable a kernel of an unnamed objective is kept by: the user's own (each run
        wraps it anew), else `fn`."""
        return self.objective.origin or self.objective.fn

    @property
    def rest(self) -> tuple:
        """Everything but the objective, with the way f is called."""
        style = (self.objective.style, self.objective.dim)
        rest = (self.kind, self.nesterov, self.d, self.dtype, self.order, self.clamp)
        return (*style, *rest, self.tol_set, self.device, self.scheduled)

    @property
    def key(self) -> tuple | None:
        """This kernel's name within a process; None for a callable (see `named`)."""
        named = self.named
        if named is None:
            return None
        return (named, *self.rest)
