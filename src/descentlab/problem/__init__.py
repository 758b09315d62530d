"""What is minimized: `Objective`, the registry of test functions, formula strings, starts,
gradients, and `resolve`, which turns what the user gave (f, start) into an Objective and an
``(N, d)`` tensor of starting points."""

from . import formula, functions
from .objective import Objective
from .resolve import named_or_formula, resolve
from .starts import grid, random

__all__ = ["Objective", "formula", "functions", "grid", "named_or_formula", "random", "resolve"]
