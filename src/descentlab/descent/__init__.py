"""The rules: `descend` (the reference loop and the engine choice), the optimizer registry,
walkers and the recorder, `Trajectory` with save and load, and `race`."""

from . import optimizers
from .loop import descend
from .race import Race, race
from .trajectory import Trajectory, load

__all__ = ["Race", "Trajectory", "descend", "load", "optimizers", "race"]
