"""The compiled engine's C backend: the objective's value and autograd gradient, torch.optim's
update and every stop rule of the eager loop, written out as one C loop per block of points and
compiled by the system's C compiler in well under a second.

Why not only inductor: a cold `torch.compile` of the step costs seconds (importing dynamo and
inductor, then its scheduler and C++ wrapper), and the kernel it writes crosses memory every
few steps where this loop keeps a point's state in registers across a whole call
(`benchmarks/results/throughput.md` has the figures). What this backend cannot translate, it
refuses (`Unsupported`), and the engine falls back (`descentlab.engine.loop_for`).

The steps, one module each:

1. `trace`: f and the update rule run once under a dispatch mode that records every aten call.
2. `translate` (with `expressions`): the tape as C statements over one point's coordinates.
3. `source`: the loop's C source around them.
4. `build`: compiled and kept on disk, verified by digest before every load.
5. `kernels`: loaded by ctypes and checked against autograd before first use.
6. `run`: the loop run in calls of about 0.2 s, the points split across threads.
"""

from .build import BuildInterrupted
from .kernels import LOAD_SECONDS, Kernel, kernel, loaded, prebuild, readiness
from .run import loop
from .trace import Unsupported

__all__ = [
    "LOAD_SECONDS",
    "BuildInterrupted",
    "Kernel",
    "Unsupported",
    "kernel",
    "loaded",
    "loop",
    "prebuild",
    "readiness",
]
