"""Step 5 of the C backend: a built loop as a `Kernel`, checked against autograd before its
first use, and kept for the process.

`kernel(spec)` traces f (`source`), builds or finds the library (`build`), and compares the
kernel's values and gradients with the eager engine's at points spread over f's domain
(`check`): a translation error becomes `Unsupported`, never a wrong run. Kernels are kept by
`Spec.key` for registered functions and formulas, and by library for all (two callables with
the same source share one); a callable's source is traced afresh each run (milliseconds), since
it may read globals that changed.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable

import numpy as np
import torch

from ...problem.gradients import Evaluator
from ..spec import Spec
from ..updates import STATE_SIZE
from . import build
from .source import sources
from .trace import Unsupported

SYMBOLS = ("descend", "evaluate", "values_of", "norms_of")
# seconds before a built library runs (tracing, loading, the check), and a build's, by d
LOAD_SECONDS = 0.05


def build_seconds(d: int) -> float:
    return 0.3 + 0.13 * d


class Kernel:
    """A built loop (`sources`) and its checking twin, as Python callables over tensors."""

    def __init__(self, library: ctypes.CDLL, d: int, dtype: torch.dtype, state_size: int):
        scalar = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
        i64, ptr = ctypes.c_longlong, ctypes.c_void_p
        self.loop = library.descend
        self.loop.restype = i64
        self.loop.argtypes = [i64] * 8 + [ptr, i64, i64] + [ptr] * 8 + [scalar, scalar] + [ptr] * 3
        self.evaluate_c = library.evaluate
        self.evaluate_c.restype = None
        self.evaluate_c.argtypes = [i64, ptr, ptr, ptr]
        self.at_rows = {"values": library.values_of, "norms": library.norms_of}
        for fn in self.at_rows.values():
            fn.restype, fn.argtypes = None, [i64, ptr, ptr]
        self.d, self.dtype, self.state_size = d, dtype, state_size

    def rows(self, path: np.ndarray, what: str) -> np.ndarray:
        """f's values (`what` "values") or gradient norms ("norms") ``(R, N)`` at the positions
        of a recording, ``path`` ``(R, N, d)`` (a view of ``(R, d, N)`` memory, as `loop`
        records it, is read in place)."""
        r, n, _ = path.shape
        cols = np.ascontiguousarray(path.transpose(0, 2, 1))
        assert str(cols.dtype) == str(self.dtype).removeprefix("torch."), (cols.dtype, self.dtype)
        out = np.empty((r, n), dtype=cols.dtype)
        for i in range(r):
            self.at_rows[what](n, cols[i].ctypes.data, out[i].ctypes.data)
        return out

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``(N,)`` and gradients ``(N, d)`` at ``(N, d)`` points."""
        n = x.shape[0]
        cols = x.T.contiguous()
        v = torch.empty(n, dtype=self.dtype)
        g = torch.empty(self.d, n, dtype=self.dtype)
        self.evaluate_c(n, cols.data_ptr(), v.data_ptr(), g.data_ptr())
        return v, g.T


# kernels and sources by `Spec.key` (named objectives); checked kernels by library, for all
_KERNELS: dict[tuple, Kernel | Unsupported] = {}
_SOURCES: dict[tuple, list[str] | Unsupported] = {}
_CHECKED: dict[str, Kernel] = {}
# a callable's sources, by this run's wrapper of it (`objective.fn`): traced again each run,
# since f may read globals that changed; an entry goes when the wrapper does (no reused ids)
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember(cache: dict, key, make: Callable):
    """`make()`, kept under `key` (not kept when None); a lasting `Unsupported` it raised is
    kept too, and raised again."""
    got = cache.get(key) if key is not None else None
    if got is None:
        try:
            got = make()
        except Unsupported as exc:
            if key is not None and exc.lasting:
                cache[key] = exc
            raise
        if key is not None:
            cache[key] = got
    if isinstance(got, Unsupported):
        raise got
    return got


def _sources(spec: Spec) -> list[str]:
    """`sources`, kept by `spec.key`; for a callable (no key), while its function lives:
    `auto`'s `readiness` and then `kernel` ask for it in the same run."""
    key = spec.key
    if key is None:
        try:
            cache, key = _TRACED.setdefault(spec.objective.fn, {}), spec.rest
        except TypeError:  # not weakly referenceable: traced each time
            cache = {}
    else:
        cache = _SOURCES
    return _remember(cache, key, lambda: sources(spec))


def kernel(spec: Spec, cancelled: Callable[[], bool] | None = None) -> Kernel:
    """The built and checked loop for `spec` (kept for the process). Raises `Unsupported` when
    the C backend cannot run it, `build.BuildInterrupted` when `cancelled()` turns true while
    it is built."""

    def make() -> Kernel:
        texts = _sources(spec)
        for text in texts:  # the same source, built and checked already (another callable)
            if build.library_name(text) in _CHECKED:
                return _CHECKED[build.library_name(text)]
        try:
            text, library = texts[0], build.load(texts[0], SYMBOLS, cancelled)
        except Unsupported as exc:  # no libmvec here: the compiler's scalar math
            if not exc.lasting:
                raise
            text, library = texts[1], build.load(texts[1], SYMBOLS, cancelled)
        made = Kernel(library, spec.d, spec.dtype, STATE_SIZE[spec.kind])
        check(made, spec.objective, spec.d, spec.dtype)
        _CHECKED[build.library_name(text)] = made
        return made

    return _remember(_KERNELS, spec.key, make)


def loaded(spec: Spec) -> bool:
    """Whether this process has built and checked the C loop for a named objective."""
    return spec.key is not None and isinstance(_KERNELS.get(spec.key), Kernel)


def readiness(spec: Spec) -> float | None:
    """Seconds before the C loop could run: 0 when this process has it, `LOAD_SECONDS` when it
    is built on disk, `build_seconds` otherwise; None when the C backend cannot write it."""
    got = _KERNELS.get(spec.key) if spec.key is not None else None
    if isinstance(got, Kernel):
        return 0.0
    if isinstance(got, Unsupported) or build.compiler() is None:
        return None
    try:
        texts = _sources(spec)
        if any(build.library_name(text) in _CHECKED for text in texts):
            return 0.0
        if any(build.is_built(text) for text in texts):
            return LOAD_SECONDS
    except Unsupported:
        return None
    return build_seconds(spec.d)


def prebuild(specs: list[Spec]) -> None:
    """Build the loops of many runs at once, one compiler per core (`build.prebuild`), so that
    `kernel` then finds each on disk: a sweep's loops. Tracing stays in this thread; a loop
    that cannot be written or built is left for `kernel` to report."""
    texts = []
    for spec in specs:
        if loaded(spec):
            continue
        try:
            texts.append(_sources(spec)[0])
        except Unsupported:
            continue
    build.prebuild(texts)


def check(made: Kernel, objective, d: int, dtype) -> None:
    """The kernel's values and gradients against autograd's (`gradients.Evaluator`, the eager
    engine's) at points spread over f's domain: the same NaNs, and numbers within a few units
    of the last place of the largest one (transcendental functions may round differently)."""
    gen = torch.Generator().manual_seed(2)
    u = torch.rand(64, d, generator=gen, dtype=torch.float64)
    if objective.domain:
        lo = torch.tensor([b[0] for b in objective.domain], dtype=torch.float64)
        hi = torch.tensor([b[1] for b in objective.domain], dtype=torch.float64)
        points = lo + u * (hi - lo)
    else:
        points = (u - 0.5) * 8
    points = torch.cat([points, torch.zeros(1, d, dtype=torch.float64)]).to(dtype)
    want_v, want_g = Evaluator(objective)(points)
    got_v, got_g = made.evaluate(points)
    eps = torch.finfo(dtype).eps
    for name, got, want in (
        ("value", got_v, want_v),
        ("gradient", got_g, want_g.reshape(got_g.shape)),
    ):
        if not torch.equal(torch.isnan(got), torch.isnan(want)):
            raise Unsupported(f"the C translation gives NaN where autograd does not ({name})")
        finite = torch.isfinite(want) & torch.isfinite(got)
        infinite = torch.isinf(want) | torch.isinf(got)
        if not torch.equal(got[infinite], want[infinite]):
            raise Unsupported(f"the C translation disagrees with autograd ({name}, inf)")
        scale = float(want[finite].abs().max()) if finite.any() else 0.0
        err = float((got[finite] - want[finite]).abs().max()) if finite.any() else 0.0
        if err > 64 * eps * max(scale, 1.0):
            raise Unsupported(f"the C translation disagrees with autograd ({name}: {err:.3g})")
