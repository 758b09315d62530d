"""descentlab: gradient descent you can see and measure.

>>> import descentlab as dl
>>> run = dl.descend(lambda x: 1.2 * x**2 + 4, start=-3.0, lr=0.2, steps=10)
>>> run.trace_lines()[:2]
['f(-3.0) = 1.5e+01', 'f(-1.6) = 6.9']
"""

from .bench.sweep import BenchResult, bench
from .descent import optimizers
from .descent.loop import descend
from .descent.optimizers import GradientDescent
from .descent.race import Race, race
from .descent.trajectory import Trajectory, load
from .errors import (
    DescentError,
    FormulaError,
    LoadError,
    MemoryNeedError,
    ObjectiveError,
    OptimizerError,
    RecordingError,
    StartError,
    UnknownNameError,
)
from .problem import formula, functions
from .problem.gradients import gradient
from .problem.objective import Objective
from .problem.starts import grid, random
from .training import (
    Callback,
    CancelFit,
    EarlyStopping,
    Landscape,
    Learner,
    StopAtLoss,
    datasets,
    landscape,
    losses,
    lr_sweep,
    models,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # matplotlib takes a noticeable moment to import; load the pictures only when asked for
    if name == "explore":  # the widget needs anywidget: load it when asked for
        from .explorer import explore

        return explore
    if name in ("plot", "animate"):
        import importlib

        plot = importlib.import_module(".plot", __name__)
        return plot if name == "plot" else plot.animate
    raise AttributeError(f"module 'descentlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"plot", "animate", "explore"})


__all__ = [
    "BenchResult",
    "Callback",
    "CancelFit",
    "DescentError",
    "EarlyStopping",
    "FormulaError",
    "GradientDescent",
    "Landscape",
    "Learner",
    "LoadError",
    "MemoryNeedError",
    "Objective",
    "ObjectiveError",
    "OptimizerError",
    "Race",
    "RecordingError",
    "StartError",
    "StopAtLoss",
    "Trajectory",
    "UnknownNameError",
    "bench",
    "datasets",
    "descend",
    "explore",
    "formula",
    "functions",
    "gradient",
    "grid",
    "landscape",
    "load",
    "losses",
    "lr_sweep",
    "models",
    "optimizers",
    "plot",
    "race",
    "random",
]
