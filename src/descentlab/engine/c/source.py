"""Step 3 of the C backend: the loop's C source. The objective's value and gradient,
torch.optim's update and every stop rule of the eager loop for one block of points, written out
by `sources` from what `translate` gives.

The loop (`_LOOP`): for each block of `LANES` points, for each iteration, every lane runs the
eager loop's iteration (`descent.loop.eager_loop`) without branches: step (held if stopped),
evaluate, the divergence test with its return to the previous position, the tolerance test,
the record. The compiler vectorizes over the lanes; a block's points stay in registers and L1
across all of a call's iterations.

Floating point: the flags (`build`) forbid contracting a * b + c and fast-math, so f and its
gradient are computed as torch computes them, operation by operation; only transcendental
functions (glibc's libmvec where the machine has it, else libm) and torch's own square root may
differ in the last bits. Where torch.optim's CPU kernels fuse a multiply and an add, the update
says so and the header's `FMA` rounds once.
"""

from __future__ import annotations

import math
from string import Template

import torch

from ...status import CONVERGED, DIVERGED
from ..spec import Spec
from ..updates import HYPER, STATE_SIZE, base_kind
from .expressions import CTYPE, Emitter, math_fn, vector_norm
from .translate import objective_code, update_code

# points per block in the C loop: 64 float32 lanes are four AVX-512 vectors, four chains the
# core can overlap (fewer leave the units waiting on latency; benchmarks/throughput.py's C rows)
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


def per_step_keys(spec: Spec) -> list[str]:
    """The hyper-parameters the C loop reads per step from its table (`run.loop`): Adam's bias
    corrections (which carry the rate), or the rate where a schedule changes it."""
    if base_kind(spec.kind) == "adam":
        return ["step_size", "inv_c2sqrt"]
    return ["lr"] if spec.scheduled else []


def sources(spec: Spec) -> list[str]:
    """The C source of the loop (`_LOOP`) for this objective, optimizer and stop rules
    (`spec.tol_set`: whether the fast path tests the tolerance at all), twice: with glibc's
    vector math declared, and without (for a machine whose libc has none). f is traced once.
    Raises `trace.Unsupported` where f or the update cannot be written in C."""
    fn, d, dtype, kind, nesterov = spec.objective.fn, spec.d, spec.dtype, spec.kind, spec.nesterov
    order, clamp, tol_set = spec.order, spec.clamp, spec.tol_set
    T = CTYPE[dtype]
    ns = STATE_SIZE[kind]
    f_lines, f_value, f_grads = objective_code(fn, d, dtype)
    updates = [update_code(kind, nesterov, dtype, c, ns) for c in range(d)]
    per_step = per_step_keys(spec)
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
    # bound its speed): whether the value plus a quantity finite exactly where the norm is (the
    # sum of squares, or of the partial derivatives) is finite, which it is only where both
    # are (an overflowing sum reports an event that is none, and the full path finds none);
    # whether every |x_j| is within the limit (NaN compares false); and with a tolerance,
    # whether the norm may be below it. The norm itself is not computed (`refresh` does, where
    # the full path or the run's end needs it).
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
            [
                f"const T h_{key} = per_step[(k - k0) * {len(per_step)} + {i}];"
                for i, key in enumerate(per_step)
            ],
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
