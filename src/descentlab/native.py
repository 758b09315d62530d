"""The compiled engine's C backend: the objective's value and autograd gradient, torch.optim's
update and every stop rule of the eager loop, written out as one C loop per block of points and
compiled by the system's C compiler in well under a second.

Why not only inductor: a cold `torch.compile` of the step took 16-25 s here (importing dynamo
and inductor alone 2.4-4.7 s, then its scheduler and C++ wrapper), and the fastest kernel it
wrote ran at 26 % of a hand-written C loop, because it crosses memory every few steps and
cannot keep a point's state in registers across them. This backend traces the same autograd
graph and writes C for it (`translate`); what it does not understand, it refuses
(`Unsupported`), and the engine uses inductor instead.

1. **Loop.** `sources` puts the statements into one function (`_LOOP`): for each block of
   `LANES` points, for each iteration, every lane runs the eager loop's iteration
   (`descent.eager_loop`) without branches: step (held if stopped), evaluate, the divergence
   test with its return to the previous position, the tolerance test, the record. The compiler
   vectorizes over the lanes; a block's points stay in registers and L1 across all of a call's
   iterations.
2. **Build.** gcc (or ``$CC``) with ``-O3 -march=native``; the library is kept on disk, named
   by a hash of its source, flags, compiler and CPU (`library_path`), and loaded by ctypes.
3. **Check.** Before first use, the kernel's values and gradients are compared with autograd's
   on sample points (`check`): a translation error becomes `Unsupported`, never a wrong run.
4. **Run.** `loop` drives the calls (about 0.2 s of work each, so Ctrl-C and progress are seen
   between them), splitting the points across torch's threads.

Floating point: no contraction into fused multiply-adds (``-ffp-contract=off``) and no
fast-math, so f and its gradient are computed as torch computes them, operation by operation;
only transcendental functions (glibc's libmvec where the machine has it, else libm) and torch's
own square root (which rounds some results an ulp from IEEE's) may differ in the last bits. The
updates are `updates`' formulas, which round where torch.optim's kernels sometimes fuse (its
CPU ``add_(g, alpha=-lr)`` is one fused multiply-add): positions agree to float rounding.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .trajectory import CONVERGED, DIVERGED
from .translate import (
    CTYPE,
    Emitter,
    Unsupported,
    math_fn,
    objective_code,
    update_code,
    vector_norm,
)

__all__ = ["Kernel", "Unsupported", "kernel", "loop", "readiness", "sources"]

# points per block in the C loop: 64 float32 lanes are four AVX-512 vectors, four chains the
# core can overlap (gd on Himmelblau, 1e6 points, the loop alone: 16 lanes 3.9e8 point-steps/s,
# latency-bound; 32 1.2e9; 64 1.4e9; 128 1.3e9)
LANES = 64

# glibc's vector math (libmvec): declared "simd" so the compiler calls its vector variants
_VECTOR_MATH = [
    *("acos", "acosh", "asin", "asinh", "atan", "atanh", "cbrt", "cos", "cosh", "erf", "erfc"),
    *("exp", "exp10", "exp2", "expm1", "log", "log10", "log1p", "log2", "sin", "sinh", "tan"),
    "tanh",
]
_VECTOR_MATH2 = ("atan2", "hypot", "pow")

# The loop. Each block of L points is loaded into lane arrays (two buffers, b and o), runs
# iterations k0 .. k1-1 there and is stored back. An iteration takes the fast path while every
# lane of the block is running and nothing happens: step, evaluate, test, into the other buffer;
# if any lane met an event (divergence or convergence), that result is dropped and the
# iteration is run again by the full rules, in place: a stopped lane is held, a diverged one
# goes back to its previous position, statuses and step counts are set. The two paths compute
# the same numbers for a running lane. The fast path stores no value or norm (stores bound the
# loop: 6 a step for gd in 2-D against 4 loads) and a recorded row holds positions only; where
# they are needed and stale (`fresh`: the full path, the call's end), `refresh` computes them
# again from the positions, with the same code, so with the same bits.
_LOOP = r"""
/* the value and gradient norm at the positions X, into V and GN */
static inline void refresh(T X[D][L], T *restrict V, T *restrict GN) {
  #pragma omp simd
  for (int j = 0; j < L; j++) {
$positions_of_x
$objective
$norm
    V[j] = vv;
    GN[j] = ng;
  }
}

long long descend(long long n, long long i0, long long i1, long long k0, long long k1,
                  long long every, long long first_k, long long last,
                  const T *x_in, long long in_point, long long in_coord,
                  T *x, T *restrict st, T *restrict v, T *restrict gn,
                  int8_t *restrict status, long long *restrict taken,
                  const T *restrict hyp, const T *restrict per_step, T tol, T limit,
                  const T *restrict lo, const T *restrict hi,
                  T *restrict rx) {
$constants
  long long running = 0;
  for (long long i = i0; i < i1; i += L) {
    const int m = i1 - i < L ? (int)(i1 - i) : L;
    T X[2][D][L], G[2][D][L], S[2][NS][D][L], V[2][L], GN[2][L];
    I ST[L], TK[L], WAS[L];
    /* the buffer holding the state; whether every lane runs; whether V[b], GN[b] are of X[b] */
    int b = 0, all = 1, fresh = 1;
    for (int j = 0; j < L; j++) {
      const long long p = i + (j < m ? j : 0);  /* lanes past the end repeat the first */
      for (int c = 0; c < D; c++) X[0][c][j] = x_in[p * in_point + c * in_coord];
      if (k0 == 0) {  /* the run's start: the arrays are not written yet */
$zero_state
        V[0][j] = 0; GN[0][j] = 0; ST[j] = 0;
      } else {
$load_state
        V[0][j] = v[p]; GN[0][j] = gn[p]; ST[j] = status[p];
      }
      WAS[j] = ST[j]; TK[j] = 0;
      all &= ST[j] == 0;
    }
    if (k0 > 0) {  /* the gradient at the stored position, for this call's first step */
      #pragma omp simd
      for (int j = 0; j < L; j++) {
$positions
$objective
        $keep_gradient
      }
    }
    for (long long k = k0; k < k1; k++) {
$per_step
      const int o = 1 - b, keep = every > 0 && k % every == 0;
      if (all && k > 0) {
        I event = 0, EV[L];  /* per lane, then or-ed: a reduction chained the lanes' vectors */
        #pragma omp simd
        for (int j = 0; j < L; j++) {
$previous
$step_fast
$objective
$tests_fast
          EV[j] = ev_now;
$store_fast
        }
        for (int j = 0; j < L; j++) event |= EV[j];
        if (!event) {
          b = o;
          fresh = 0;
          goto record;
        }
      }
      if (!fresh) refresh(X[b], V[b], GN[b]);
      fresh = 1;
      {
        const I stepping = k > 0;
        I live = 0, every_lane = 1;
        #pragma omp simd reduction(|:live) reduction(&:every_lane)
        for (int j = 0; j < L; j++) {
          const I run = ST[j] == 0, move = run & stepping;
          const T pv = V[b][j], pgn = GN[b][j];
$previous
$step_full
$objective
$tests
          const I bad = run & !ok, back = bad & stepping, stays = run & !back;
          done = run & ok & done;
          ST[j] = bad ? $diverged : (done ? $converged : ST[j]);
          TK[j] = (bad | done) ? (I)k : TK[j];
$store_full
          V[b][j] = stays ? vv : pv;
          GN[b][j] = stays ? ng : pgn;
          live |= run & !bad & !done;
          every_lane &= run & !bad & !done;
        }
        all = every_lane;
        if (!live) {  /* every lane stopped: only their held rows are left to write */
          for (long long kk = k; kk < k1; kk++)
            if (every > 0 && kk % every == 0)
              write_rows(n, i, m, (kk - first_k) / every, X[b], rx);
          break;
        }
      }
    record:
      if (keep) write_rows(n, i, m, (k - first_k) / every, X[b], rx);
    }
    if (!fresh) refresh(X[b], V[b], GN[b]);
    for (int j = 0; j < m; j++) {
      const long long p = i + j;
      for (int c = 0; c < D; c++) x[c * n + p] = X[b][c][j];
$store_state
      v[p] = V[b][j]; gn[p] = GN[b][j]; status[p] = (int8_t)ST[j];
      if (ST[j] != WAS[j]) taken[p] = TK[j];
      else if (ST[j] == 0 && k1 > last) taken[p] = last;  /* ran to the end */
      running += ST[j] == 0;
    }
  }
  return running;
}

/* values and gradients alone, to check the translation against autograd */
void evaluate(long long n, const T *restrict x, T *restrict v, T *restrict g) {
  for (long long i = 0; i < n; i += L) {
    const int m = n - i < L ? (int)(n - i) : L;
    T X[1][D][L], VO[L], GO[D][L];
    load_lanes(n, i, m, x, X[0]);
    #pragma omp simd
    for (int j = 0; j < L; j++) {
      const int b = 0;
$positions
$objective
      VO[j] = vv;
      for (int c = 0; c < D; c++) GO[c][j] = 0;
$gradient_out
    }
    for (int j = 0; j < m; j++) {
      v[i + j] = VO[j];
      for (int c = 0; c < D; c++) g[c * n + i + j] = GO[c][j];
    }
  }
}
"""

# a recording's values, or gradient norms, at its positions (x: D rows of n), by the loop's own
# code: the bits it would have stored (`Kernel.rows`; where the gradient is not needed, the
# compiler drops it)
_AT_ROWS = r"""
void ${what}_of(long long n, const T *restrict x, T *restrict out) {
  for (long long i = 0; i < n; i += L) {
    const int m = n - i < L ? (int)(n - i) : L;
    T X[D][L], O[L];
    load_lanes(n, i, m, x, X);
    #pragma omp simd
    for (int j = 0; j < L; j++) {
$positions_of_x
$objective
$then
      O[j] = $result;
    }
    if (m == L)
      for (int j = 0; j < L; j++) out[i + j] = O[j];
    else
      for (int j = 0; j < m; j++) out[i + j] = O[j];
  }
}
"""

_HEADER = r"""#include <math.h>
#include <stdint.h>
typedef $T T;
typedef $I I;  /* a lane's flag, as wide as T */
enum { L = $L, D = $D, NS = $NS };  /* lanes, coordinates, optimizer state rows (at least 1) */
/* a * b + c rounded once where the CPU has a fused multiply-add, as torch's kernels compute
   it there (`translate`: add with alpha, addcmul, lerp); rounded twice where it has none, as
   torch's default kernels do (-ffp-contract=off keeps every other a * b + c rounded twice) */
#if defined(FP_FAST_FMA$F) || defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define FMA(a, b, c) fma$f(a, b, c)
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif
#define PLAIN_MULADD(a, b, c) ((a) * (b) + (c))  /* integers */
$vector_math
/* Lanes from D rows of n (x[c * n + p]) at point i, m of them: past the end they repeat the
   first. A full block is copied with a constant trip count, which the compiler vectorizes (the
   masked copy alone made computing a recording's values 4.5x slower) */
static inline void load_lanes(long long n, long long i, int m, const T *restrict x, T X[D][L]) {
  if (m == L)
    for (int c = 0; c < D; c++)
      for (int j = 0; j < L; j++) X[c][j] = x[c * n + i + j];
  else
    for (int c = 0; c < D; c++)
      for (int j = 0; j < L; j++) X[c][j] = x[c * n + i + (j < m ? j : 0)];
}

/* positions only: a recording's values and norms are computed from them when asked for */
static inline void write_rows(long long n, long long i, int m, long long r, T X[D][L],
                              T *restrict rx) {
  if (m == L)
    for (int c = 0; c < D; c++)
      for (int j = 0; j < L; j++) rx[(r * D + c) * n + i + j] = X[c][j];
  else
    for (int c = 0; c < D; c++)
      for (int j = 0; j < m; j++) rx[(r * D + c) * n + i + j] = X[c][j];
}
"""


def sources(
    fn: Callable,
    d: int,
    dtype: torch.dtype,
    kind: str,
    nesterov: bool,
    order: float,
    clamp: bool,
    tol_set: bool,
) -> list[str]:
    """The C source of the loop (`_LOOP`) for this objective, optimizer and stop rules
    (`tol_set`: whether the fast path tests the tolerance at all), twice: with glibc's vector
    math declared, and without (for a machine whose libc has none). f is traced once."""
    from string import Template

    from .updates import HYPER, STATE_SIZE, base_kind

    T = CTYPE[dtype]
    ns = STATE_SIZE[kind]
    f_lines, f_value, f_grads = objective_code(fn, d, dtype)
    updates = [update_code(kind, nesterov, dtype, c, ns) for c in range(d)]
    per_step = [key for key in ("step_size", "inv_c2sqrt") if base_kind(kind) == "adam"]
    coords, rows = range(d), [(s, c) for s in range(ns) for c in range(d)]

    def block(lines: list[str], indent: int) -> str:
        return "\n".join(" " * indent + line for line in lines)

    def new_positions(held: str | None) -> list[str]:
        """The update of every coordinate (from px, pg, ps) as x{c} and ns{s}_{c}; `held`:
        the flag under which a lane moves (the others keep px)."""
        lines = []
        for c, (body, moved, kept) in enumerate(updates):
            lines += body
            if clamp:
                moved = f"(({moved}) < lo{c} ? lo{c} : (({moved}) > hi{c} ? hi{c} : ({moved})))"
            lines.append(f"T x{c} = {moved if held is None else f'{held} ? {moved} : px{c}'};")
            lines += [f"T ns{s}_{c} = {kept[s]};" for s in range(ns)]
        return lines

    # descent.healthy, operation by operation: v - v and (0 + gn) - gn are 0 when finite
    checks = Emitter("t")
    var = lambda expr: checks.var(expr, T)  # noqa: E731
    norm = vector_norm([f"gg{c}" for c in coords], order, dtype, var)
    largest = vector_norm([f"x{c}" for c in coords], math.inf, dtype, var)
    norm_lines = [*checks.lines, f"const T ng = {norm};"]
    tests = [
        *norm_lines,
        f"T sp = (vv - vv) + ng; sp = sp - ng; sp = sp + {largest};",
        "I ok = sp <= limit, done = ng < tol;",
    ]
    # the fast path only asks whether anything happened, in as few operations as it can (they
    # bound its speed: gd on Himmelblau, the loop alone, 3.4e9 point-steps/s with no tests at
    # all, 2.2e9 with these): whether the value plus a quantity finite exactly where the norm
    # is (the sum of squares, or of the partial derivatives) is finite, which it is only where
    # both are (an overflowing sum reports an event that is none, and the full path finds
    # none; 2.1e9 testing each separately); whether every |x_j| is within the limit (NaN
    # compares false); and with a tolerance, whether the norm may be below it. The norm itself
    # is not computed (`refresh` does, where the full path or the run's end needs it).
    absf = math_fn("fabs", dtype)
    fine = ["(w - w == 0)", *(f"({absf}(x{c}) <= limit)" for c in coords)]
    below = "(ng < tol)"
    if order == math.inf:
        fast = [f"const T ag{c} = {absf}(gg{c});" for c in coords]
        fast += ["T ng = ag0;"] + [f"ng = ng > ag{c} ? ng : ag{c};" for c in coords[1:]]
        fast.append(f"const T w = vv + {' + '.join(f'gg{c}' for c in coords)};")
    elif order == 2:
        # ss < tol2 wherever sqrt(ss) < tol (`tol2` is tol * tol rounded up)
        fast = [f"const T ss = {' + '.join(f'(gg{c}) * (gg{c})' for c in coords)};"]
        fast.append("const T w = vv + ss;")
        below = "(ss < tol2)"
    else:
        fast = [f"const T ng = {vector_norm([f'gg{c}' for c in coords], order, dtype, str)};"]
        fast.append("const T w = vv + ng;")
    fast.append(f"const I ev_now = !({' & '.join(fine)}){' | ' + below if tol_set else ''};")
    objective = [*f_lines, f"T vv = {f_value};", *(f"T gg{c} = {f_grads[c]};" for c in coords)]
    text = "\n".join(f_lines + [line for u in updates for line in u[0]])
    declarations = []
    for name in _VECTOR_MATH + list(_VECTOR_MATH2):
        if f"{math_fn(name, dtype)}(" in text:
            args = ", ".join([T] * (2 if name in _VECTOR_MATH2 else 1))
            declarations += [
                "#pragma omp declare simd notinbranch",
                f"{T} {math_fn(name, dtype)}({args});",
            ]
    constants = [
        f"const T h_{key} = hyp[{i}];" for i, key in enumerate(HYPER) if key not in per_step
    ]
    # tol squared, rounded up: a float's square is exact in double, a double's a half ulp off
    nextafter = math_fn("nextafter", dtype)
    constants.append(f"const T tol2 = {nextafter}((T)((double)tol * tol), (T)INFINITY);")
    if clamp:
        constants += [f"const T lo{c} = lo[{c}], hi{c} = hi[{c}];" for c in coords]
    parts = {
        "constants": block(constants, 2),
        "load_state": block(
            [f"S[0][{s}][{c}][j] = st[({s} * D + {c}) * n + p];" for s, c in rows], 8
        ),
        "zero_state": block([f"S[0][{s}][{c}][j] = 0;" for s, c in rows], 8),
        "store_state": block(
            [f"st[({s} * D + {c}) * n + p] = S[b][{s}][{c}][j];" for s, c in rows], 6
        ),
        "positions": block([f"const T x{c} = X[b][{c}][j];" for c in coords], 8),
        "objective": block(objective, 10),
        "keep_gradient": " ".join(f"G[b][{c}][j] = gg{c};" for c in coords),
        "gradient_out": block([f"GO[{c}][j] = gg{c};" for c in coords], 6),
        "per_step": block(
            [f"const T h_{key} = per_step[(k - k0) * 2 + {i}];" for i, key in enumerate(per_step)],
            6,
        ),
        "previous": block(
            [f"const T px{c} = X[b][{c}][j], pg{c} = G[b][{c}][j];" for c in coords]
            + [f"const T ps{s}_{c} = S[b][{s}][{c}][j];" for s, c in rows],
            10,
        ),
        "step_fast": block(new_positions(None), 10),
        "step_full": block(new_positions("move"), 10),
        "tests": block(tests, 10),
        "norm": block(norm_lines, 4),
        "tests_fast": block(fast, 10),
        "store_fast": block(
            [f"X[o][{c}][j] = x{c}; G[o][{c}][j] = gg{c};" for c in coords]
            + [f"S[o][{s}][{c}][j] = ns{s}_{c};" for s, c in rows],
            10,
        ),
        "positions_of_x": block([f"const T x{c} = X[{c}][j];" for c in coords], 4),
        "store_full": block(
            [
                f"X[b][{c}][j] = stays ? x{c} : px{c}; G[b][{c}][j] = run ? gg{c} : pg{c};"
                for c in coords
            ]
            + [f"S[b][{s}][{c}][j] = move ? ns{s}_{c} : ps{s}_{c};" for s, c in rows],
            10,
        ),
        "diverged": str(DIVERGED),
        "converged": str(CONVERGED),
    }
    body = Template(_LOOP).substitute(parts)
    for what, then, result in (("values", "", "vv"), ("norms", parts["norm"], "ng")):
        body += Template(_AT_ROWS).substitute(parts, what=what, then=then, result=result)
    header = Template(_HEADER)
    single = dtype == torch.float32  # C's float functions and macros end in f / F
    shape = dict(T=T, I="int" if single else "long long", L=LANES, D=d)
    shape.update(F="F" if single else "", f="f" if single else "")
    return [
        header.substitute(shape, NS=max(ns, 1), vector_math=math) + body
        for math in ("\n".join(declarations), "")
    ]


# ---------------------------------------------------------------------------------------------
# build, check, run

_FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",  # sqrt as one instruction (errno is never read)
    "-fno-trapping-math",  # selects may compute both sides (no signal is ever trapped)
    "-ffp-contract=off",  # torch rounds a*b + c twice: so must we
    "-fopenmp-simd",  # the lane loops' "omp simd" (no OpenMP runtime)
    "-fPIC",
    "-shared",
)
_LIBRARIES: dict[str, ctypes.CDLL] = {}
_TEMP: list[tempfile.TemporaryDirectory] = []


def compiler() -> str | None:
    """The C compiler: ``$CC``, else gcc, else cc; None when there is none."""
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _folder() -> Path:
    """Where built libraries are kept: beside the packaged kernels (`kernelcache.directory`), or
    in a folder of this process's when that cache is off."""
    from . import kernelcache

    where = kernelcache.directory()
    if where is None:
        if not _TEMP:
            _TEMP.append(tempfile.TemporaryDirectory(prefix="descentlab-c-"))
        return Path(_TEMP[0].name)
    return where / "c"


def library_path(text: str) -> Path:
    """Where the library built from `text` is kept: its name is a hash of the source, the
    flags, the compiler and the machine, so a change to any of them builds anew."""
    cc = compiler()
    if cc is None:
        raise Unsupported("no C compiler (gcc or cc, or $CC)")
    ident = "\n".join([text, cc, *_FLAGS, platform.machine(), _cpu_flags(), sys.platform])
    return _folder() / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.so"


def build(text: str) -> ctypes.CDLL:
    """Compile `text` into a shared library (or find it built) and load it."""
    lib = library_path(text)
    if lib.name in _LIBRARIES:
        return _LIBRARIES[lib.name]
    _build_file(text, lib)
    try:
        loaded = ctypes.CDLL(str(lib))
    except OSError as exc:
        lib.unlink(missing_ok=True)
        raise Unsupported(f"the built kernel does not load ({exc})") from None
    _LIBRARIES[lib.name] = loaded
    return loaded


def _build_file(text: str, lib: Path) -> None:
    """`lib` built from `text` unless it is on disk; a source that failed is not tried again."""
    failed = lib.with_suffix(".failed")
    if failed.is_file():
        raise Unsupported(failed.read_text().strip())
    if not lib.is_file():
        lib.parent.mkdir(parents=True, exist_ok=True)
        try:
            _compile(compiler(), text, lib.parent, lib)
        except Unsupported as exc:
            failed.write_text(str(exc))
            raise


def prebuild(runs: list[tuple]) -> None:
    """Build the loops for many runs' settings (`kernel`'s arguments) at once, one compiler
    per core, so that `kernel` then finds each on disk: a sweep's loops, which its blocks
    would otherwise build one after another. Tracing stays in this thread; a loop that
    cannot be written or built is left for `kernel` to report."""
    from concurrent.futures import ThreadPoolExecutor

    todo = {}
    for settings in runs:
        key = _key(*settings)
        if isinstance(_KERNELS.get(key), Kernel):
            continue
        try:
            text = _sources(key, *settings)[0]
            lib = library_path(text)
        except Unsupported:
            continue
        if lib.name not in _CHECKED and not lib.is_file():
            todo[lib] = text
    if len(todo) < 2:
        return

    def one(item: tuple[Path, str]) -> None:
        with contextlib.suppress(Unsupported):
            _build_file(item[1], item[0])

    with ThreadPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:
        list(pool.map(one, todo.items()))


def _compile(cc: str, text: str, folder: Path, lib: Path) -> None:
    from .trajectory import atomic_file

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        c_file = Path(tmp, "kernel.c")
        c_file.write_text(text)
        vector = "#pragma omp declare simd" in text
        links = ["-Wl,-z,defs", "-lmvec", "-lm"] if vector else ["-lm"]
        with atomic_file(lib) as target:
            done = subprocess.run(
                [cc, *_FLAGS, str(c_file), "-o", str(target), *links],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                first = (done.stderr.strip().splitlines() or ["failed"])[0][:200]
                raise Unsupported(f"the C compiler failed: {first}")


_CPU: str | None = None


def _cpu_flags() -> str:
    """What -march=native compiles for: the CPU's model and flags."""
    global _CPU
    if _CPU is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
            lines = [ln for ln in text.splitlines() if ln.startswith(("flags", "model name"))]
            _CPU = "\n".join(sorted(set(lines)))
        except OSError:
            _CPU = platform.processor()
    return _CPU


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


# kernels and sources by run settings, for objectives a name identifies (`_key`); checked
# kernels by library (source), for all
_KERNELS: dict[tuple, Kernel | Unsupported] = {}
_SOURCES: dict[tuple, list[str] | Unsupported] = {}
_CHECKED: dict[str, Kernel] = {}
# a callable's sources, by its wrapper (an entry goes when the wrapper does: no reused ids)
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# seconds to load a built kernel (tracing, source, loading, the check) and to build one (gcc
# here: d = 2 0.3-0.6 s, d = 10 1.2-1.6 s, d = 64 7-9.5 s)
LOAD_SECONDS = 0.05


def build_seconds(d: int) -> float:
    return 0.3 + 0.13 * d


def _key(objective, kind, nesterov, d, dtype, order, clamp, tol_set) -> tuple | None:
    """Registered functions and formulas, by name and text; None for a callable, which has no
    identity that outlives it (its wrapper's id is reused once it is collected), so its source
    is traced afresh each run (milliseconds; `_TRACED`) and its kernel found by that source."""
    from .kernelcache import objective_identity

    ident = objective_identity(objective)
    if ident is None:
        return None
    ident = tuple(sorted(ident.items()))
    return (ident, kind, bool(nesterov), d, dtype, float(order), bool(clamp), bool(tol_set))


def _remember(cache: dict, key, make: Callable):
    """`make()`, kept under `key` (not kept when None); what it raised (`Unsupported`) is kept
    too, and raised again."""
    got = cache.get(key) if key is not None else None
    if got is None:
        try:
            got = make()
        except Unsupported as exc:
            got = exc
        if key is not None:
            cache[key] = got
    if isinstance(got, Unsupported):
        raise got
    return got


def _sources(key, objective, kind, nesterov, d, dtype, order, clamp, tol_set) -> list[str]:
    """`sources`, kept by `key`; for a callable (no key), while its wrapper lives: `auto`'s
    `readiness` and then `kernel` ask for it in the same run."""
    args = (objective.fn, d, dtype, kind, nesterov, order, clamp, tol_set)
    if key is None:
        try:
            cache, key = _TRACED.setdefault(objective.fn, {}), args[1:]
        except TypeError:  # not weakly referenceable: traced each time
            cache = {}
    else:
        cache = _SOURCES
    return _remember(cache, key, lambda: sources(*args))


def kernel(objective, kind, nesterov, d, dtype, order, clamp, tol_set):
    """The built and checked loop for this run's settings (kept for the process); raises
    `Unsupported` when the C backend cannot write it."""
    from .updates import STATE_SIZE

    settings = (objective, kind, nesterov, d, dtype, order, clamp, tol_set)
    key = _key(*settings)

    def make() -> Kernel:
        texts = _sources(key, *settings)
        for text in texts:  # the same source, built and checked already (another callable)
            if library_path(text).name in _CHECKED:
                return _CHECKED[library_path(text).name]
        try:
            text, library = texts[0], build(texts[0])
        except Unsupported:  # no libmvec here: the compiler's scalar math
            text, library = texts[1], build(texts[1])
        made = Kernel(library, d, dtype, STATE_SIZE[kind])
        check(made, objective, d, dtype)
        _CHECKED[library_path(text).name] = made
        return made

    return _remember(_KERNELS, key, make)


def loaded(objective, kind, nesterov, d, dtype, order, clamp, tol_set) -> bool:
    """Whether this process has built and checked the C loop for a named objective."""
    key = _key(objective, kind, nesterov, d, dtype, order, clamp, tol_set)
    return key is not None and isinstance(_KERNELS.get(key), Kernel)


def readiness(objective, kind, nesterov, d, dtype, order, clamp, tol_set) -> float | None:
    """Seconds before the C loop could run: 0 when this process has it, `LOAD_SECONDS` when it
    is built on disk, `build_seconds` otherwise; None when the C backend cannot write it."""
    settings = (objective, kind, nesterov, d, dtype, order, clamp, tol_set)
    key = _key(*settings)
    got = _KERNELS.get(key) if key is not None else None
    if isinstance(got, Kernel):
        return 0.0
    if isinstance(got, Unsupported) or compiler() is None:
        return None
    try:
        texts = _sources(key, *settings)
    except Unsupported:
        return None
    if any(library_path(text).name in _CHECKED for text in texts):
        return 0.0
    if any(library_path(text).is_file() for text in texts):
        return LOAD_SECONDS
    return build_seconds(d)


def check(made: Kernel, objective, d: int, dtype) -> None:
    """The kernel's values and gradients against autograd's (`gradients.Evaluator`, the eager
    engine's) at points spread over f's domain: the same NaNs, and numbers within a few units
    of the last place of the largest one (transcendental functions may round differently)."""
    from .gradients import Evaluator

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


# a call lasts about this long (its length in iterations is measured as the run goes), so
# Ctrl-C and the progress bar are seen between calls; a call costs, besides its work, one load
# and store of the points' state and one evaluation. Where one iteration of a huge batch takes
# more than an eighth of that, a call takes at least 8 (up to LONG_CALL_SECONDS), so that cost
# does not dominate (gd on Himmelblau, 6.4e7 points, 64 iterations on 2 threads: 11.4 s in calls
# of 1 iteration, 3.1 s of 8)
CALL_SECONDS = 0.2
LONG_CALL_SECONDS = 1.0
# point-iterations of the first call, which measures the rate (35 ms for gd on Himmelblau here)
FIRST_CALL_WORK = 2**26
_POOL = None


def call_steps(took: float, steps: int) -> int:
    """Iterations for the next call, after one of `steps` iterations took `took` seconds."""
    per_step = max(took, 1e-6) / steps
    return max(1, int(min(LONG_CALL_SECONDS, max(CALL_SECONDS, 8 * per_step)) / per_step))


def _pool(threads: int):
    global _POOL
    from concurrent.futures import ThreadPoolExecutor

    if _POOL is None or _POOL._max_workers < threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="descentlab-c")
    return _POOL


def loop(made: Kernel, plan, x0, s, rec, interrupted, bar):
    """Same contract as `descent.eager_loop`: returns x, v, gn, status, taken, k (x as (N, d)).

    The points' state lives in ``(d, N)`` rows between calls; each call runs iterations k0 ..
    k1-1 for every point (`sources`), the points split between torch's threads (ctypes lets go
    of the GIL during a call)."""
    import time

    from .trajectory import INTERRUPTED
    from .updates import HYPER, base_kind, bias_corrections, floats, hyper, kind_of

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
        rows = [rec.next_row(k) for k in range(first_k, k1, every)] if every else []
        table = None
        if adam:  # the update at iteration k is torch.optim's step t = k
            t = [max(k, 1) for k in range(k0, k1)]
            table = torch.tensor([bias_corrections(raw, step) for step in t], dtype=dtype)
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
            rows[0][0].data_ptr() if rows else null,  # positions only (`Recorder.defer`)
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
