"""The compiled engine: faster ways to run the eager loop's rules, and the choice among them.

A compiled run (`loop_for`) tries, in order:

1. the C loop (`engine.c`), on the CPU, when it can translate f and a C compiler builds it;
2. inductor (`engine.inductor`), on a GPU, or on the CPU for what the C loop refuses;
3. the eager loop, with a one-line note, when compiling fails.

``engine="auto"`` compiles only where it pays (`worth_compiling`): when the kernel is ready, or
when the eager time saved exceeds what building it costs. ``DESCENTLAB_C_LOOP=off`` skips the C
loop (inductor's path on the CPU, for tests and benchmarks of it).

Nothing here is imported by ``import descentlab``: the descent loads it when a run asks.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable

from .spec import Spec
from .updates import SUPPORTED, base_kind

__all__ = [
    "SUPPORTED",
    "Spec",
    "c_kernel",
    "loop_for",
    "prebuild",
    "unsupported",
    "worth_compiling",
]

# settings that must keep these values for a run to be compiled (all optimizers, then per kind)
_FIXED = {
    "weight_decay": 0,
    "maximize": False,
    "foreach": None,
    "differentiable": False,
    "capturable": False,
    "fused": None,
}
_EXTRA_FIXED = {
    "sgd": {"dampening": 0},
    "adagrad": {"lr_decay": 0, "initial_accumulator_value": 0},
    "rmsprop": {"centered": False},
    "adam": {"amsgrad": False, "decoupled_weight_decay": False},
}

# The cost model `worth_compiling` weighs, in point-iterations per second and seconds. The
# rates are set below what benchmarks/throughput.py measures (on Himmelblau), for objectives
# heavier than that one.
_EAGER_RATE = 2e7
_EAGER_STEP_SECONDS = 3e-4  # an eager iteration's own cost at any N (dispatch, torch.optim)
_C_RATE = {"gd": 8e8, "sgd": 6e8, "adagrad": 4e8, "rmsprop": 4e8, "adam": 4e8}
_INDUCTOR_RATE = {"gd": 5e8, "sgd": 3e8, "adagrad": 2.5e8, "rmsprop": 2.5e8, "adam": 2.5e8}
_INDUCTOR_COMPILE_SECONDS = 16.0  # a cold torch.compile of a run's kernels
# the eager engine's first torch.optim optimizer in a process imports torch._dynamo (torch.optim
# wraps Optimizer.__init__ in a lazy `_disable_dynamo`); the C loop never does
_DYNAMO_IMPORT_SECONDS = 1.0
_OFF = ("off", "0", "false", "no", "none")


def unsupported(objective, plan, grad, settings=None) -> str | None:
    """Why this run cannot use the compiled engine, or None when it can (`settings`: the
    run's `descent.loop.Settings`, for its schedule)."""
    kind = SUPPORTED.get(plan.name)
    if kind is None:
        return f"optimizer {plan.name!r} has no compiled update (compiled: {', '.join(SUPPORTED)})"
    if grad != "autograd":
        return "only autograd gradients are compiled"
    if objective.style == "network":
        return "f is a network's loss on a plane through its weights (torch.func over the model)"
    if objective.style in ("point", "loop"):
        return "f is evaluated point by point; write it over a (..., d) tensor"
    if objective.dim > 64:
        return "more than 64 coordinates (the compiled step unrolls over coordinates)"
    fixed = {**_FIXED, **_EXTRA_FIXED[kind]}
    for key, value in plan.kwargs.items():
        if key in fixed and value != fixed[key]:
            return f"{plan.name} with {key}={value!r} has no compiled update"
    if settings is not None and settings.schedule is not None and settings.rates is None:
        return "the schedule changes more than the rate (one-cycle's momentum, say)"
    return None


def spec_for(
    objective, plan, grad, d: int, dtype, device, settings
) -> tuple[Spec | None, str | None]:
    """The compiled engine's `Spec` of a run, or why it cannot have one: ``(spec, None)`` or
    ``(None, reason)``, `unsupported` asked once."""
    reason = unsupported(objective, plan, grad, settings)
    if reason is not None:
        return None, reason
    return Spec.of(objective, plan, d, dtype, device, settings), None


def c_enabled(spec: Spec) -> bool:
    """Whether the C loop may run `spec`: on the CPU, unless ``DESCENTLAB_C_LOOP`` is off."""
    switch = os.environ.get("DESCENTLAB_C_LOOP", "on").strip().lower()
    return spec.on_cpu and switch not in _OFF


def dynamo_imported() -> bool:
    """Whether this process has imported torch._dynamo (the eager engine's first torch.optim
    optimizer does)."""
    return "torch._dynamo" in sys.modules


def worth_compiling(
    spec: Spec, n: int, steps: int, every: int | None = None, single: bool = True
) -> bool:
    """Compile when the kernel is ready in this process (or, for the C loop, built on disk and
    cheap to load), or when the eager time saved exceeds what building it costs (the C loop's
    build, else a cold torch.compile). For a `single` run in a process that has not imported
    dynamo yet, eager's time includes that import (a sweep deciding many runs at once pays it
    once, and passes False)."""
    from . import c
    from .inductor import loop as inductor

    use_c = c_enabled(spec)
    if use_c and c.loaded(spec):  # the C loop serves every record mode
        return True
    if inductor.ready(spec, every):
        return True
    work = n * steps
    kind = base_kind(spec.kind)
    saved = work / _EAGER_RATE + steps * _EAGER_STEP_SECONDS - work / _C_RATE[kind]
    if single and not dynamo_imported():
        saved += _DYNAMO_IMPORT_SECONDS
    if use_c and saved > c.LOAD_SECONDS:  # tracing f to find out: milliseconds
        ready = c.readiness(spec)
        if ready is not None:
            return saved > ready
    saved = work / _EAGER_RATE - work / _INDUCTOR_RATE[kind]
    return saved > _INDUCTOR_COMPILE_SECONDS


def c_kernel(spec: Spec, cancelled: Callable[[], bool] | None = None):
    """The C loop for `spec` (`c.kernel`), or None when it cannot be had: off the CPU, switched
    off, or an objective the C backend does not translate. A failure that may pass (a compiler
    that timed out, a full disk) is said in a one-line note."""
    from . import c

    if not c_enabled(spec):
        return None
    try:
        return c.kernel(spec, cancelled)
    except c.Unsupported as exc:
        if not exc.lasting:
            warnings.warn(f"C loop unavailable this time ({exc})", stacklevel=3)
        return None


def prebuild(specs: list[Spec]) -> None:
    """Build the C loops of many runs at once (`c.prebuild`); `c_kernel` then loads them."""
    from . import c

    c.prebuild([spec for spec in specs if c_enabled(spec)])


def loop_for(eager_loop: Callable, spec: Spec) -> Callable:
    """The compiled loop of `spec` (`spec_for`), with `eager_loop`'s contract: the C loop where
    it can run, else inductor's, else `eager_loop` itself with a one-line note. A Ctrl-C while
    the C loop is built stops the run at its start, as it would stop the eager loop there."""

    def loop(objective, grad, plan, x0, s, rec, interrupted, bar):
        from . import c

        began = time.perf_counter()
        try:
            made = c_kernel(spec, interrupted)
        except c.BuildInterrupted:
            return eager_loop(objective, grad, plan, x0, s, rec, lambda: True, bar)
        if made is not None:
            rec.kernel = "c"
            return c.loop(made, plan, x0, s, rec, interrupted, bar)
        rec.kernel = "inductor"
        try:
            from .inductor.loop import compiled_loop, quiet_torch

            with quiet_torch():
                return compiled_loop(spec, plan, x0, s, rec, interrupted, bar)
        except Exception as exc:  # torch.compile can fail in many ways; eager always works
            # (compilation happens at each kernel's first call, which for a recording run comes
            # after a row was taken: start the record afresh; an error of f itself recurs in
            # the eager loop and is raised from there)
            rec.reset()
            rec.kernel = None
            text = str(exc).strip()
            first = text.splitlines()[0][:160] if text else type(exc).__name__
            warnings.warn(
                f"compiled engine unavailable ({type(exc).__name__}: {first}); running eager "
                f"after {time.perf_counter() - began:.1f} s",
                stacklevel=3,
            )
            return eager_loop(objective, grad, plan, x0, s, rec, interrupted, bar)

    return loop
