"""Learning-rate schedules: a name with its settings, or a factory of any torch scheduler.

A descent steps its schedule once per step: the rate of step k is the optimizer's rate when
it takes step k, recorded in ``Trajectory.rates``. The Learner steps it once per batch or once
per epoch, as asked. Every named schedule is a torch scheduler: torch's own where it has the
formula, else `LambdaLR` with the formula below (d2l's, chapter 12.11, where d2l has one). With
base rate lr, T steps in all and t the steps taken:

=============  ===============================================================  ==============
name           rate at step t                                                   settings
=============  ===============================================================  ==============
constant       lr
step           lr · gamma^floor(t / step_size)  (``StepLR``)                     step_size,
                                                                                gamma=0.1
multistep      lr · gamma^(milestones reached)  (``MultiStepLR``)                milestones,
                                                                                gamma=0.1
exponential    max(lr · gamma^t, floor)  (d2l's factor scheduler, whose first    gamma=0.99,
               value is already base · factor: lr = 2.0 · 0.9 for its curve)    floor=0
cosine         warmup_start + (lr − warmup_start) t / warmup for t < warmup;    final=0,
               then final + (lr − final)(1 + cos(π (t − warmup) / (T −          warmup=0,
               warmup))) / 2, and final from T on (d2l's cosine scheduler;      warmup_start=0,
               T is `span` where given, else the run's steps)                   span=steps
warmup         warmup_start + (lr − warmup_start) t / warmup, then lr            warmup,
                                                                                warmup_start=0
onecycle       torch's ``OneCycleLR`` with max_lr = lr over T steps, the rate    pct_start=0.3,
               only (``cycle_momentum=False``)                                  div_factor=25,
                                                                                final_div_factor=1e4
inverse_sqrt   lr / sqrt(t + 1)  (d2l's square-root scheduler)
=============  ===============================================================  ==============

>>> import torch
>>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
>>> sched = resolve("cosine", steps=20, warmup=5)(opt)
>>> rates = []
>>> for t in range(3):
...     rates.append(round(opt.param_groups[0]["lr"], 3))
...     sched.step()
>>> rates
[0.0, 0.06, 0.12]
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping

import torch

from ..errors import DescentError, UnknownNameError

Factory = Callable[[torch.optim.Optimizer], object]

# name: (its settings with their defaults, None where one must be given)
SETTINGS: dict[str, dict] = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": 0.99, "floor": 0.0},
    "cosine": {"final": 0.0, "warmup": 0, "warmup_start": 0.0, "span": None},
    "warmup": {"warmup": None, "warmup_start": 0.0},
    "onecycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
    "inverse_sqrt": {},
}
ALIASES = {
    "factor": "exponential",
    "sqrt": "inverse_sqrt",
    "one_cycle": "onecycle",
    "linear_warmup": "warmup",
    "multi_step": "multistep",
    "none": "constant",
}


def names() -> list[str]:
    return list(SETTINGS)


def resolve(schedule, steps: int, **settings) -> Factory | None:
    """A factory ``f(optimizer) -> scheduler`` for `schedule`: None; a name (``"cosine"``) with
    `settings` (``warmup=5``); a name and settings as ``("cosine", {"warmup": 5})`` or
    ``{"name": "cosine", "warmup": 5}``; or a factory ``lambda opt: torch.optim.lr_scheduler.X(
    opt, ...)`` for any torch scheduler. `steps` is the T of the formulas."""
    if schedule is None:
        if settings:
            raise DescentError(f"schedule settings {sorted(settings)} given without a schedule")
        return None
    if isinstance(schedule, str | tuple | Mapping):
        name, given = named(schedule)
        return _named(name, steps, {**given, **settings})
    if callable(schedule):
        if settings:
            raise DescentError("settings go inside a schedule factory, not beside it")
        return _checked_factory(schedule)
    raise DescentError(
        f"schedule must be a name ({', '.join(names())}) or a factory "
        f"lambda opt: torch.optim.lr_scheduler.X(opt, ...), got {schedule!r}"
    )


def named(schedule) -> tuple[str, dict]:
    """A schedule given by name, as (name, settings): ``"cosine"``, ``("cosine", {"warmup":
    5})`` or ``{"name": "cosine", "warmup": 5}``. A factory (or anything else) is refused."""
    if isinstance(schedule, str):
        return schedule, {}
    if isinstance(schedule, tuple) and len(schedule) == 2 and isinstance(schedule[1], Mapping):
        return schedule[0], dict(schedule[1])
    if isinstance(schedule, Mapping):
        rest = dict(schedule)
        if "name" not in rest:
            raise DescentError(
                "a schedule given as a mapping needs its 'name', e.g. "
                "{'name': 'cosine', 'warmup': 5}"
            )
        return rest.pop("name"), rest
    raise DescentError(
        f"a schedule here is a name ({', '.join(names())}) or (name, settings), got {schedule!r}"
    )


# the settings the compiled engine's updates read besides the rate
_COMPILED_SETTINGS = ("momentum", "betas", "alpha", "eps", "weight_decay", "dampening")


def planned(factory: Factory, plan, steps: int) -> tuple[float, ...] | None:
    """The rate each of `steps` steps takes under `factory`'s scheduler: what the eager loop's
    optimizer would read before each step. Found by running the scheduler on the optimizer of a
    parameter with no gradient (its steps move nothing). None where the scheduler also changes
    another setting the compiled updates read (one-cycle's momentum, with cycle_momentum)."""
    opt = plan.build([torch.zeros(1, requires_grad=True)])
    scheduler = factory(opt)
    group = opt.param_groups[0]
    watched = {k: group[k] for k in _COMPILED_SETTINGS if k in group}
    rates = []
    for _ in range(steps):
        rates.append(float(group["lr"]))
        opt.step()
        scheduler.step()
        if any(group[k] != v for k, v in watched.items()):
            return None
    return tuple(rates)


def _checked_factory(factory: Callable) -> Factory:
    def make(opt):
        made = factory(opt)
        if not isinstance(made, torch.optim.lr_scheduler.LRScheduler) and not hasattr(made, "step"):
            raise DescentError(
                f"the schedule factory returned {type(made).__name__}, not a torch scheduler; "
                "write lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10)"
            )
        return made

    return make


def _named(name: str, steps: int, given: dict) -> Factory:
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in SETTINGS:
        raise UnknownNameError("schedule", name, [*SETTINGS, *ALIASES])
    wanted = SETTINGS[key]
    unknown = sorted(set(given) - set(wanted))
    if unknown:
        offered = ", ".join(wanted) or "none"
        close = difflib.get_close_matches(unknown[0], list(wanted), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (its settings: {offered})"
        raise DescentError(f"schedule {key!r} takes no {unknown[0]!r}{hint}")
    missing = [k for k, v in wanted.items() if v is None and k not in given and k != "span"]
    if missing:
        raise DescentError(f"schedule {key!r} needs {missing[0]}=..., e.g. {_example(key)}")
    s = {**wanted, **given}
    _check(key, s, steps)
    lr_scheduler = torch.optim.lr_scheduler
    if key == "step":
        return lambda opt: lr_scheduler.StepLR(opt, int(s["step_size"]), float(s["gamma"]))
    if key == "multistep":
        marks = sorted(int(m) for m in s["milestones"])
        return lambda opt: lr_scheduler.MultiStepLR(opt, marks, float(s["gamma"]))
    if key == "onecycle":
        return lambda opt: lr_scheduler.OneCycleLR(
            opt,
            max_lr=[g["lr"] for g in opt.param_groups],
            total_steps=max(steps, 2),
            pct_start=float(s["pct_start"]),
            div_factor=float(s["div_factor"]),
            final_div_factor=float(s["final_div_factor"]),
            cycle_momentum=False,
        )
    factor = _factor(key, s, steps)
    return lambda opt: _lambda(opt, factor)


def _lambda(opt, factor):
    # the base rate of each group, read when the schedule starts: factor gives a multiple of it
    bases = [g["lr"] for g in opt.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(opt, [lambda t, b=b: factor(t, b) / b for b in bases])


def _factor(key: str, s: dict, steps: int) -> Callable[[int, float], float]:
    """The rate at step t for base rate lr, as the table in the module says."""
    if key == "constant":
        return lambda t, lr: lr
    if key == "exponential":
        g, floor = float(s["gamma"]), float(s["floor"])
        return lambda t, lr: max(lr * g**t, floor)
    if key == "inverse_sqrt":
        return lambda t, lr: lr * (t + 1.0) ** -0.5
    w, w0 = int(s["warmup"]), float(s["warmup_start"])
    if key == "warmup":
        return lambda t, lr: w0 + (lr - w0) * t / w if t < w else lr
    final = float(s["final"])
    steps = int(s["span"]) if s["span"] is not None else steps  # the cosine's own length
    span = max(steps - w, 1)

    def cosine(t, lr):
        if t < w:
            return w0 + (lr - w0) * t / w
        if t <= steps:
            return final + (lr - final) * (1 + math.cos(math.pi * (t - w) / span)) / 2
        return final

    return cosine


def _check(key: str, s: dict, steps: int) -> None:
    def number(name, low=None, high=None, whole=False):
        v = s[name]
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (not whole or float(v).is_integer())
        ok = ok and (low is None or v >= low) and (high is None or v <= high)
        if not ok:
            span = (
                f" in [{low}, {high}]"
                if high is not None
                else f" >= {low}"
                if low is not None
                else ""
            )
            kind = "a whole number" if whole else "a number"
            raise DescentError(f"schedule {key!r}: {name} must be {kind}{span}, got {v!r}")

    if key == "step":
        number("step_size", 1, whole=True)
    if key in ("step", "multistep"):
        number("gamma", 0.0)
    if key == "multistep":
        m = s["milestones"]
        if (
            not isinstance(m, list | tuple)
            or not m
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in m)
        ):
            raise DescentError(
                f"schedule 'multistep': milestones must be step numbers, e.g. (15, 30), got {m!r}"
            )
    if key == "exponential":
        number("gamma", 0.0, 1.0)
        number("floor", 0.0)
    if key in ("cosine", "warmup"):
        number("warmup", 0 if key == "cosine" else 1, whole=True)
        number("warmup_start", 0.0)
        if key == "cosine" and s["span"] is not None:
            number("span", 1, whole=True)
            steps = int(s["span"])
        if s["warmup"] >= max(steps, 1) and key == "cosine":
            raise DescentError(
                f"schedule 'cosine': warmup ({s['warmup']}) must be shorter than the {steps} steps"
            )
    if key == "cosine":
        number("final", 0.0)
    if key == "onecycle":
        number("pct_start", 0.0, 1.0)
        if not 1 / max(steps, 1) < s["pct_start"] < 1:  # each phase at least one step
            raise DescentError(
                f"schedule 'onecycle': pct_start must leave a step to each phase, between "
                f"{1 / max(steps, 1):.3g} and 1 (exclusive) for {steps} steps, got "
                f"{s['pct_start']!r}"
            )
        number("div_factor", 1e-12)
        number("final_div_factor", 1e-12)


def _example(key: str) -> str:
    return {"step": "step_size=10", "multistep": "milestones=(15, 30)", "warmup": "warmup=5"}.get(
        key, ""
    )


def describe(schedule) -> str:
    """A schedule as text, for a Trajectory's meta: ``cosine(warmup=5)``, or ``factory``."""
    if isinstance(schedule, str):
        return schedule
    if isinstance(schedule, tuple) and len(schedule) == 2 and isinstance(schedule[1], Mapping):
        name, settings = schedule
    elif isinstance(schedule, Mapping):
        settings = {k: v for k, v in schedule.items() if k != "name"}
        name = schedule.get("name")
    else:
        return "factory"
    inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return f"{name}({inner})" if inner else str(name)
