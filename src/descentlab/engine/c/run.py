"""Step 6 of the C backend: run a built `Kernel` over the points, in calls of about
`CALL_SECONDS` (so Ctrl-C and the progress bar are seen between them), the points split across
torch's threads (ctypes lets go of the GIL during a call)."""

from __future__ import annotations

import ctypes
import math
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from ...status import INTERRUPTED
from ..updates import HYPER, base_kind, bias_corrections, floats, hyper, kind_of, rate_at
from .kernels import Kernel
from .source import LANES

# A call lasts about this long (its length in iterations is measured as the run goes), so
# Ctrl-C and the progress bar are seen between calls. A call costs, besides its work, one load
# and store of the points' state and one evaluation: where one iteration of a huge batch takes
# more than an eighth of that, a call takes at least 8 (up to LONG_CALL_SECONDS), so that cost
# does not dominate.
CALL_SECONDS = 0.2
LONG_CALL_SECONDS = 1.0
# point-iterations of the first call, which measures the rate
FIRST_CALL_WORK = 2**26
_POOL = None


def call_steps(took: float, steps: int) -> int:
    """Iterations for the next call, after one of `steps` iterations took `took` seconds."""
    per_step = max(took, 1e-6) / steps
    return max(1, int(min(LONG_CALL_SECONDS, max(CALL_SECONDS, 8 * per_step)) / per_step))


def _pool(threads: int):
    global _POOL

    if _POOL is None or _POOL._max_workers < threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="descentlab-c")
    return _POOL


def loop(made: Kernel, plan, x0, s, rec, interrupted, bar):
    """Same contract as `descent.loop.eager_loop`: returns x, v, gn, status, taken, k (x as (N, d)).

    The points' state lives in ``(d, N)`` rows between calls; each call runs iterations k0 ..
    k1-1 for every point (`sources`), the points split between torch's threads (ctypes lets go
    of the GIL during a call)."""
    n, d = x0.shape
    dtype = x0.dtype
    # written by the first call (untouched pages cost nothing until then)
    x = torch.empty(d, n, dtype=dtype)
    state = torch.empty(made.state_size, d, n, dtype=dtype)
    v, gn = torch.empty(n, dtype=dtype), torch.empty(n, dtype=dtype)
    status = torch.empty(n, dtype=torch.int8)
    taken = torch.empty(n, dtype=torch.int64)  # written where a point stops
    # the hyper-parameters in the run's dtype, as the C loop holds them; Adam's bias
    # corrections from them as given (Python floats), as torch.optim computes them
    h, raw = hyper(plan, dtype, "cpu"), floats(plan)
    hyp = torch.tensor([float(h[key]) for key in HYPER], dtype=dtype)
    adam = base_kind(kind_of(plan)) == "adam"
    tol = -math.inf if s.tol is None else s.tol
    lo, hi = s.box if s.box is not None else (hyp, hyp)
    every = s.every or 0
    if every:
        rec.coordinate_layout()
        rec.defer(made.rows)
    rec.engine = "compiled"
    threads = max(1, min(torch.get_num_threads(), -(-n // (4 * LANES))))
    cut = [min(n, -(-n * t // threads // LANES) * LANES) for t in range(threads + 1)]
    null = ctypes.c_void_p(0)
    per_call = max(1, min(s.steps + 1, FIRST_CALL_WORK // max(n, 1)))
    source_of_x = (x0.data_ptr(), *x0.stride())
    k0 = 0
    while True:
        k1 = min(k0 + per_call, s.steps + 1)
        first_k = -(-k0 // every) * every if every else 0
        first_row = rec.next_rows(range(first_k, k1, every)) if every else None
        table = None
        if adam or s.rates is not None:  # the update at iteration k is torch.optim's step t = k
            t = [max(k, 1) for k in range(k0, k1)]
            at = [rate_at(raw, step - 1, s.rates) for step in t]  # step t's rate: rates[t - 1]
            rows = [
                bias_corrections(a, step) if adam else (a["lr"],)
                for a, step in zip(at, t, strict=True)
            ]
            table = torch.tensor(rows, dtype=dtype)
        common = (
            *source_of_x,
            x.data_ptr(),
            state.data_ptr() if made.state_size else null,
            v.data_ptr(),
            gn.data_ptr(),
            status.data_ptr(),
            taken.data_ptr(),
            hyp.data_ptr(),
            table.data_ptr() if table is not None else null,
            tol,
            s.limit,
            lo.data_ptr(),
            hi.data_ptr(),
            first_row[0].data_ptr() if first_row else null,  # positions only (`Recorder.defer`)
        )

        def part(t, k0=k0, k1=k1, first_k=first_k, common=common):
            return made.loop(n, cut[t], cut[t + 1], k0, k1, every, first_k, s.steps, *common)

        began = time.perf_counter()
        running = part(0) if threads == 1 else sum(_pool(threads).map(part, range(threads)))
        took = time.perf_counter() - began
        source_of_x = (x.data_ptr(), 1, n)
        if running == 0:  # the eager loop stops at the iteration the last point stopped
            k = int(taken.max())
            rec.steps = [r for r in rec.steps if r <= k]
            break
        if k1 == s.steps + 1:
            k = s.steps
            break
        if interrupted():
            k = k1 - 1
            running = status == 0
            status[running] = INTERRUPTED
            taken[running] = k
            break
        bar.update(k1)
        per_call = call_steps(took, k1 - k0)
        k0 = k1
    return x.T, v, gn, status, taken, k
