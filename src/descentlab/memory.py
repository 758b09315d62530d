"""The memory work needs (starts, a run, its recording), checked before it is allocated."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .errors import MemoryNeedError, RecordingError


def _available_memory() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized CPU tensor from NumPy's allocator, which asks Linux for 2 MiB pages
    on large arrays (`madvise(MADV_HUGEPAGE)`; torch's allocator does not): a fresh 800 MB
    recording then faults about 400 times instead of 200,000 (gd on Himmelblau, 1e6 points x
    100 steps recorded, with the C loop: 0.29-0.36 s against 0.47-0.87 s)."""
    try:
        kind = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 and others NumPy lacks
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.empty(shape, dtype=kind))


def point_row_bytes(d: int, dtype) -> int:
    """What one recorded row costs per point: its position, value and gradient norm."""
    return (d + 2) * (torch.finfo(dtype).bits // 8)


def run_point_bytes(d: int, dtype, state: int) -> int:
    """What a run holds per point besides its starts and its recording, at the least: the C
    loop's positions, `state` optimizer tensors like them, value, gradient norm, status and
    step count. The eager loop holds the gradient and the previous positions too, and
    autograd f's intermediate values while it evaluates."""
    b = torch.finfo(dtype).bits // 8
    return (1 + state) * d * b + 2 * b + 9


def eager_point_bytes(fn, probe: torch.Tensor, state: int) -> float:
    """What the eager loop holds per point, f's part measured: the parameter, its gradient and
    the previous positions, `state` optimizer tensors like them, values, norms and flags, and
    1.5 times what autograd saves while it evaluates f (the backward pass's temporaries), found
    by evaluating f on `probe`, a few of the points. Against peak memory measured at 1e7
    points: Himmelblau 86 bytes a point (81 measured), with Adam 102 (97), Ackley 107 (102)."""
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            v = fn(probe.detach().clone().requires_grad_(True))
        saved.append(v.numel() * v.element_size())
    except Exception:  # f's own errors are the run's to report
        saved.clear()
    b, d = probe.element_size(), probe.shape[1]
    return (3 + state) * d * b + 5 * b + 12 + 1.5 * sum(saved) / len(probe)


def check_eager_memory(per_point: float, n: int, rows: int, d: int, dtype, hint: str) -> None:
    """Refuse an eager run whose arrays (`eager_point_bytes`) and recording (`rows`, 0 for a
    final state alone) do not fit in what is available (its starts exist already)."""
    per_point += rows * point_row_bytes(d, dtype)
    available = memory_budget()
    if n * per_point > available:
        raise MemoryNeedError(
            f"an eager run of {n:,} points in {d}-D needs about {_gb(n * per_point)} but "
            f"{_gb(available)} is available; use at most {max(1, int(available // per_point)):,}"
            f" points{hint}"
        )


def check_start_memory(what: str, n: int, d: int, dtype, scratch: int) -> None:
    """Refuse starting points that cannot be built: n x d of them in `dtype`, and `scratch`
    bytes per coordinate on the way."""
    per_point = d * (torch.finfo(dtype).bits // 8 + scratch)
    budget = memory_budget()
    if n * per_point > budget:
        raise MemoryNeedError(
            f"{what} of {n:,} points in {d}-D takes {_gb(n * per_point)}, but {_gb(budget)} is "
            f"available; use at most {int(budget // per_point):,} points"
        )


def memory_budget(max_memory: float | None = None) -> float:
    """The memory work may take: `max_memory` (a recording's, where given), else 80 % of what
    is available."""
    return max_memory if max_memory is not None else 0.8 * _available_memory()


def check_run(
    rows: int,
    n: int,
    d: int,
    dtype,
    max_memory,
    record,
    state: int = 0,
    on_cpu: bool = True,
    unbuilt: bool = False,
) -> None:
    """Refuse, before anything is allocated, a recording over `max_memory` (default 80 % of
    what is available), or, on the CPU, a run whose recording and working memory
    (`run_point_bytes`, with `state` optimizer tensors per point, and the starting points
    where they are `unbuilt` yet) do not fit in what is available. There a final state alone
    is kept as the run's own arrays, not a copy."""
    rows = 0 if record == "final" and on_cpu else rows
    per_row = n * point_row_bytes(d, dtype)
    need = rows * per_row
    budget = memory_budget(max_memory)
    if need > budget:
        if record == "final":  # a copy off the device
            advice = f"use at most {max(1, int(budget // point_row_bytes(d, dtype))):,} points"
        else:
            every = max(2, math.ceil(rows / max(1, int(budget // per_row) - 1)))
            advice = (
                f"use record='final', record={every} (every {_ordinal(every)} step), or fewer "
                "points"
            )
        what = (
            "every step"
            if record == "all"
            else "the final state"
            if record == "final"
            else f"every {_ordinal(record)} step"
        )
        raise RecordingError(
            f"recording {what} of {n:,} points in {d}-D ({rows:,} rows) needs {_gb(need)} but "
            f"{_gb(budget)} is available; {advice}"
        )
    if not on_cpu:  # the run's own arrays are in the device's memory
        return
    per_point = run_point_bytes(d, dtype, state) + rows * point_row_bytes(d, dtype)
    per_point += d * (torch.finfo(dtype).bits // 8) if unbuilt else 0
    available = memory_budget()
    if n * per_point > available:
        part = f" ({_gb(need)} of it the recording)" if rows else ""
        raise MemoryNeedError(
            f"a run of {n:,} points in {d}-D needs at least {_gb(n * per_point)}{part} but "
            f"{_gb(available)} is available; use at most {max(1, int(available // per_point)):,}"
            " points" + (", or record='final'" if rows else "")
        )


def _ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 101st."""
    k = int(k)
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"
