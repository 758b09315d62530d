"""The memory a recording needs, checked before anything is allocated."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .errors import RecordingError


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


def memory_budget(max_memory: float | None = None) -> float:
    """The memory a recording may take: `max_memory`, else 80 % of what is available."""
    return max_memory if max_memory is not None else 0.8 * _available_memory()


def check_recording(rows: int, n: int, d: int, dtype, max_memory, record) -> None:
    per_row = n * point_row_bytes(d, dtype)
    need = rows * per_row
    budget = memory_budget(max_memory)
    if need <= budget:
        return
    fit = max(1, int(budget // per_row) - 1)
    every = max(2, math.ceil(rows / fit))
    what = (
        "every step"
        if record == "all"
        else f"every {_ordinal(record)} step"
        if record != "final"
        else "the final state"
    )
    raise RecordingError(
        f"recording {what} of {n:,} points in {d}-D ({rows:,} rows) needs {_gb(need)} but "
        f"{_gb(budget)} is available; use record='final', record={every} "
        f"(every {_ordinal(every)} step), or fewer points"
    )


def _ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 101st."""
    k = int(k)
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"
