"""The memory work needs (starts, a run, its recording), checked before it is allocated."""

from __future__ import annotations

import contextvars
import math
import os

import numpy as np
import torch

from .errors import MemoryNeedError, RecordingError


def _meminfo_available() -> float:
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


def _status_bytes(field: str) -> float | None:
    """A size from /proc/self/status (VmSize, VmData), in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rlimit_room() -> list[tuple[float, str]]:
    """What the soft address-space and data limits (``ulimit -v``, ``ulimit -d``) leave."""
    try:
        import resource
    except ImportError:  # not on this platform
        return []
    out = []
    for limit, field, name in (
        ("RLIMIT_AS", "VmSize", "the address-space limit (ulimit -v)"),
        ("RLIMIT_DATA", "VmData", "the data-size limit (ulimit -d)"),
    ):
        soft = resource.getrlimit(getattr(resource, limit))[0]
        used = _status_bytes(field)
        if soft != resource.RLIM_INFINITY and used is not None:
            out.append((max(0.0, soft - used), name))
    return out


def _cgroup_room(root: str = "/sys/fs/cgroup", table: str = "/proc/self/cgroup") -> float:
    """What this process's memory cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``,
    the tightest along its path) leaves, counting its page cache that can be dropped
    (``inactive_file``) as free, as container runtimes do; inf without a limit."""
    try:
        with open(table) as fh:
            lines = [line.rstrip("\n").split(":", 2) for line in fh]
    except OSError:
        return math.inf
    room = math.inf
    for _, controllers, path in (parts for parts in lines if len(parts) == 3):
        if controllers == "":  # v2: files in the unified tree
            bases = [os.path.join(root, "unified"), root]
            names = ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            bases = [os.path.join(root, "memory")]
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        for base in bases:
            # the cgroup's own folder and its parents; in a cgroup namespace, the mount's root
            parts = [p for p in path.split("/") if p]
            folders = [os.path.join(base, *parts[:k]) for k in range(len(parts), -1, -1)]
            for folder in folders:
                limit = _read_number(os.path.join(folder, names[0]))
                used = _read_number(os.path.join(folder, names[1]))
                if limit is None or used is None or limit >= 2**60:
                    continue
                cache = _stat_field(os.path.join(folder, "memory.stat"), names[2]) or 0.0
                room = min(room, max(0.0, limit - max(0.0, used - cache)))
    return room


def _read_number(path: str) -> float | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    if text == "max":
        return math.inf
    try:
        return float(text)
    except ValueError:
        return None


def _stat_field(path: str, name: str) -> float | None:
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == name:
                    return float(value)
    except (OSError, ValueError):
        pass
    return None


def limits() -> list[tuple[float, str]]:
    """Every bound on what this process may still allocate, in bytes, with its name: the
    memory available on the machine, the rlimits, the container's cgroup."""
    out = [(_meminfo_available(), "available memory")]
    out += _rlimit_room()
    cgroup = _cgroup_room()
    if cgroup < math.inf:
        out.append((cgroup, "the container's memory limit (cgroup)"))
    return out


def _available_memory() -> float:
    """What this process may still allocate: the tightest of `limits`."""
    return min(room for room, _ in limits())


def limit_note(budget: float) -> str:
    """A note for a message, " under the address-space limit (ulimit -v)", when such a limit
    and not the machine's free memory sets `budget` (80 % of it); "" otherwise."""
    room, name = min(limits())
    if name != "available memory" and math.isclose(0.8 * room, budget, rel_tol=0.01):
        return f" under {name}"
    return ""


_ALLOCATOR = ("can't allocate memory", "out of memory", "cannot allocate memory")


def refuse_failed_allocations(fn):
    """`fn`, with an allocation that fails while it runs (the checks before it estimate; f's
    own temporaries and other processes are not in them) raised as a one-line
    `MemoryNeedError` naming the limit, not as torch's or NumPy's traceback."""
    import functools

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        token = _RUN.set(None)
        try:
            return fn(*args, **kwargs)
        except (MemoryError, RuntimeError) as exc:
            if not allocation_failure(exc):
                raise
            room, name = min(limits())
            raise MemoryNeedError(
                f"the run ran out of memory under {name}, {_gb(room)} left: {_what_failed(exc)};"
                f" {_advice(exc)}"
            ) from None
        finally:
            _RUN.reset(token)

    return guarded


# the run in progress, for the advice after an allocation failed: its points, whether it
# records, and the process's size when it began
_RUN: contextvars.ContextVar[dict | None] = contextvars.ContextVar("run", default=None)


def note_run(n: int, recording: bool) -> None:
    """Say, before a run's arrays are allocated, how many points it has and whether it
    records, so that an allocation that fails can be answered with what would fit."""
    _RUN.set({"n": n, "recording": recording, "size": _status_bytes("VmSize") or 0.0})


def _advice(exc: BaseException) -> str:
    """What would fit: from what the run had taken when the allocation failed, the points that
    the room it began with holds (the recording's remedy only when it records)."""
    import re

    run, room = _RUN.get(), min(room for room, _ in limits())
    if run is None or not run["n"] or not math.isfinite(room):
        return "use fewer points, fewer steps, or record='final'"
    asked = re.search(r"tried to allocate (\d+) bytes", str(exc))
    grown = max(0.0, (_status_bytes("VmSize") or 0.0) - run["size"])
    per_point = max((grown + (float(asked.group(1)) if asked else 0.0)) / run["n"], 1.0)
    # the room it began with (what is left and what it took since), and of that half: what it
    # had taken when it failed is less than it needs at its peak
    fits = max(1, int(0.5 * (room + grown) / per_point))
    more = ", or record='final'" if run["recording"] else ""
    return f"use at most about {fits:,} points{more}"


def _what_failed(exc: BaseException) -> str:
    """Says "could not allocate 0.4 GB" for torch's allocator message, else the first line."""
    import re

    text = str(exc).strip()
    asked = re.search(r"tried to allocate (\d+) bytes", text)
    if asked:
        return f"could not allocate {_gb(float(asked.group(1)))}"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:160]


def allocation_failure(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed: NumPy's or Python's MemoryError, or torch's
    allocator ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(pattern in text for pattern in _ALLOCATOR)


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
            f"{_gb(available)} is available{limit_note(available)}; use at most "
            f"{max(1, int(available // per_point)):,}"
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
            f"available{limit_note(budget)}; use at most {int(budget // per_point):,} points"
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
            f"{_gb(budget)} is available{limit_note(budget)}; {advice}"
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
            f"{_gb(available)} is available{limit_note(available)}; use at most "
            f"{max(1, int(available // per_point)):,}"
            " points" + (", or record='final'" if rows else "")
        )


def _ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 101st."""
    k = int(k)
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"
