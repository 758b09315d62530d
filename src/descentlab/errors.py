"""Domain errors. Every message is one line that names the problem and the fix."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class DescentError(ValueError):
    """Base class of every error descentlab raises on purpose."""


class UnknownNameError(DescentError):
    """A function, optimizer or option name that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else f"known: {', '.join(known)}"
        )
        super().__init__(f"unknown {kind} {name!r}; {hint}")
        self.name = name
        self.suggestions = close


class FormulaError(DescentError):
    """A formula string that is not in the allowed language."""


class ObjectiveError(DescentError):
    """A user function that cannot be used: wrong return type, shape, or no gradient."""


class StartError(DescentError):
    """Starting points with the wrong shape, dimension or non-finite coordinates."""


class OptimizerError(DescentError):
    """An optimizer that cannot be built or cannot run on a batch correctly."""


class MemoryNeedError(DescentError):
    """Work that would not fit in memory: starting points, a run, a sweep's block."""


class RecordingError(MemoryNeedError):
    """A recording that would not fit in memory."""


class LoadError(DescentError):
    """A file that is missing, truncated, or not a descentlab file."""


def check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    """Refuse non-finite, negative (and, unless allowed, zero) numeric settings."""
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = ">= 0" if allow_zero else "> 0"
        raise DescentError(f"{name} must be a finite number {need}, got {value!r}")
