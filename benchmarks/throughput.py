"""Point-steps per second of gradient descent on Himmelblau, every implementation side by side.

    .venv/bin/python benchmarks/throughput.py [--points N] [--steps S] [--reps 5] [--threads 1]
                                              [--device cuda] [--out-dir DIR]
                                              [--no-scaling] [--no-compile-times]

Rows (each run `--reps` times, alternating, median reported):
  seed-style loop        one scalar tensor per point, autograd, the hand-written step of the
                         example texts (the row keeps its name in the results files)
  grad-descent-visualizer its descend_gradient loop (autograd's elementwise_grad on (2, N))
  torch eager            one (N, 2) tensor, autograd, x -= lr * grad
  numpy                  the gradient written by hand, vectorized
  torch.compile step     one compiled step on a (2, N) layout (the layout inductor vectorizes)
  torch.compile, 4 steps the gradient written by hand, coordinates as separate tensors, 4 steps
                         unrolled in one call (one loop, each point in registers across them)
  JAX                    jit(vmap(grad)) in lax.fori_loop; lax.scan recording positions, and
                         recording positions, values and gradient norms (what a Trajectory holds)
  descentlab             dl.descend, eager and compiled (gd, adam; final only and record="all",
                         whose values and norms are computed from the positions when read: a
                         row without reading them, and one reading them), and compiled by
                         inductor with the C loop off (gd, adam)
  C, fused -O3           gcc -O3 -march=native, blocks of 32 points kept in vector registers
                         through all steps (the compute bound: on this AMD EPYC core, 8, 16, 32, 64
                         and 128 points per block ran 1.1e9, 2.5e9, 3.7e9, 3.3e9 and 3.2e9
                         point-steps/s; fewer than 32 leave the FMA units waiting on latency);
                         and Adam the same way, to show what its square root and division cost

Every implementation must land on the same final points (max |difference| is reported).
Also: first-call times of the compiled engine in fresh processes (the C loop cold and with its
library on disk; with inductor: first ever, an empty inductor cache, which includes torch's
one-time CPU probe; cold: a new objective; warm: its kernels in inductor's cache), the import
of dynamo and inductor alone, 10,000 points x 100 steps end to end, and the scaling curve
(N = 1e2 ... 1e7) with each run's peak memory, measured in a fresh process per point.
Writes benchmarks/results/throughput.json and throughput.md (throughput_2threads.* with
`--threads 2`, throughput_cuda.* with `--device cuda`).
JAX and grad-descent-visualizer come from `pip install -e ".[bench]"` plus
`pip install --no-deps grad-descent-visualizer` (its pins do not install on Python 3.11).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import descentlab as dl
from descentlab.problem.functions import himmelblau

LR = 0.01
C_GD, C_ADAM = "C, fused, -O3 -march=native", "C, fused, -O3 -march=native, adam"  # row names
INDUCTOR = "descentlab compiled by inductor (the C loop off)"
C_SOURCE = r"""
#include <math.h>
#define B 32  /* points per block: the compiler keeps them in vector registers across steps */
void descend(float *restrict x, float *restrict y, long n, int steps, float lr) {
    long i = 0;
    for (; i + B <= n; i += B) {
        float a[B], b[B];
        for (int j = 0; j < B; j++) { a[j] = x[i + j]; b[j] = y[i + j]; }
        for (int s = 0; s < steps; s++) {
            for (int j = 0; j < B; j++) {
                float p = a[j] * a[j] + b[j] - 11.0f, q = a[j] + b[j] * b[j] - 7.0f;
                float ga = 4.0f * a[j] * p + 2.0f * q, gb = 2.0f * p + 4.0f * b[j] * q;
                a[j] -= lr * ga;
                b[j] -= lr * gb;
            }
        }
        for (int j = 0; j < B; j++) { x[i + j] = a[j]; y[i + j] = b[j]; }
    }
    for (; i < n; i++) {
        float a = x[i], b = y[i];
        for (int s = 0; s < steps; s++) {
            float p = a * a + b - 11.0f, q = a + b * b - 7.0f;
            float ga = 4.0f * a * p + 2.0f * q, gb = 2.0f * p + 4.0f * b * q;
            a -= lr * ga;
            b -= lr * gb;
        }
        x[i] = a; y[i] = b;
    }
}

/* Adam (torch.optim's defaults, betas 0.9 and 0.999, eps 1e-8), the same blocking; the step
   sizes and 1/sqrt(1 - beta2^t) per step are computed once, as the compiled engine does */
#define ADAM_STEP(a, b, ma, mb, va, vb) do { \
        float p = a * a + b - 11.0f, q = a + b * b - 7.0f; \
        float ga = 4.0f * a * p + 2.0f * q, gb = 2.0f * p + 4.0f * b * q; \
        ma += 0.1f * (ga - ma); mb += 0.1f * (gb - mb); \
        va = 0.999f * va + 0.001f * ga * ga; vb = 0.999f * vb + 0.001f * gb * gb; \
        a -= ss[s] * ma / (sqrtf(va) * ic[s] + 1e-8f); \
        b -= ss[s] * mb / (sqrtf(vb) * ic[s] + 1e-8f); } while (0)
void adam(float *restrict x, float *restrict y, long n, int steps,
          const float *restrict ss, const float *restrict ic) {
    long i = 0;
    for (; i + B <= n; i += B) {
        float a[B], b[B], ma[B] = {0}, mb[B] = {0}, va[B] = {0}, vb[B] = {0};
        for (int j = 0; j < B; j++) { a[j] = x[i + j]; b[j] = y[i + j]; }
        for (int s = 0; s < steps; s++)
            for (int j = 0; j < B; j++) ADAM_STEP(a[j], b[j], ma[j], mb[j], va[j], vb[j]);
        for (int j = 0; j < B; j++) { x[i + j] = a[j]; y[i + j] = b[j]; }
    }
    for (; i < n; i++) {
        float a = x[i], b = y[i], ma = 0, mb = 0, va = 0, vb = 0;
        for (int s = 0; s < steps; s++) ADAM_STEP(a, b, ma, mb, va, vb);
        x[i] = a; y[i] = b;
    }
}
"""


def starts(n: int) -> np.ndarray:
    side = round(n**0.5)
    return dl.grid(side).points(2, ((-5.0, 5.0), (-5.0, 5.0))).numpy()


def seed_style(x0, steps):
    out = []
    for a, b in x0:
        p = torch.tensor([a, b], requires_grad=True)
        for _ in range(steps):
            y = himmelblau(p)
            y.backward()
            p.data -= LR * p.grad.data
            p.grad = None
        out.append(p.detach().numpy())
    return np.array(out)


DEVICE = "cpu"  # --device: where the torch and descentlab rows run (numpy, C and JAX stay on CPU)


def torch_eager(x0, steps):
    x = torch.tensor(x0, requires_grad=True, device=DEVICE)
    for _ in range(steps):
        himmelblau(x).sum().backward()
        with torch.no_grad():
            x -= LR * x.grad
        x.grad = None
    return x.detach().cpu().numpy()


def numpy_hand(x0, steps):
    a, b = x0[:, 0].copy(), x0[:, 1].copy()
    lr = np.float32(LR)
    for _ in range(steps):
        p, q = a * a + b - 11, a + b * b - 7
        ga, gb = 4 * a * p + 2 * q, 2 * p + 4 * b * q
        a -= lr * ga
        b -= lr * gb
    return np.stack([a, b], axis=1)


_grad_soa = torch.func.grad(lambda x: himmelblau(x.T).sum())
_compiled_step = torch.compile(lambda x: x - LR * _grad_soa(x))


def compiled_step(x0, steps):
    x = torch.tensor(x0.T.copy(), device=DEVICE)
    for _ in range(steps):
        x = _compiled_step(x)
    return x.T.cpu().numpy()


UNROLL = 4


def _hand_step(a, b):
    p, q = a * a + b - 11, a + b * b - 7
    return a - LR * (4 * a * p + 2 * q), b - LR * (2 * p + 4 * b * q)


def _unrolled(a, b):
    # coordinates as separate tensors, UNROLL steps per call: inductor fuses them into one
    # loop that keeps each point in registers across the steps
    for _ in range(UNROLL):
        a, b = _hand_step(a, b)
    return a, b


_compiled_unrolled = torch.compile(_unrolled)


def compiled_unrolled(x0, steps):
    a, b = (torch.tensor(c.copy(), device=DEVICE) for c in x0.T)
    for _ in range(steps // UNROLL):
        a, b = _compiled_unrolled(a, b)
    for _ in range(steps % UNROLL):  # (100 steps: none)
        a, b = _hand_step(a, b)
    return torch.stack([a, b], dim=1).cpu().numpy()


def descentlab(engine, optimizer="gd", record="final", kernel="c", read=False):
    """dl.descend; `kernel`: the compiled engine's compiler, the C loop or inductor; `read`:
    read the recording's values and norms too (the C loop computes them from the positions
    when first read)."""

    def run(x0, steps):
        os.environ["DESCENTLAB_C_LOOP"] = "on" if kernel == "c" else "off"
        try:
            r = dl.descend(
                "himmelblau",
                x0,
                optimizer=optimizer,
                lr=LR,
                steps=steps,
                tol=None,
                record=record,
                engine=engine,
                device=DEVICE,
            )
        finally:
            os.environ.pop("DESCENTLAB_C_LOOP", None)
        assert engine != "compiled" or r.meta["kernel"] == kernel or DEVICE != "cpu", r.meta
        if read:
            assert r.values.shape == r.grad_norms.shape == r.path.shape[:2]
        return r.x

    return run


def gdv_impl():
    try:
        from grad_descent_visualizer import descent as gdv
        from grad_descent_visualizer.test_functions import himmelblau_function
    except ImportError:
        return None
    diffs = gdv.differentiate(himmelblau_function, element_wise=True)

    def run(x0, steps):
        xy = gdv.prep_array_for_descent(x0.T.copy())
        for _ in range(steps):
            xy = gdv.descend_gradient(diffs, xy, alpha=LR)
        return xy.T

    return run


def c_kernel():
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    folder = Path(tempfile.mkdtemp())
    (folder / "k.c").write_text(C_SOURCE)
    lib = folder / "k.so"
    subprocess.run(
        [
            cc,
            "-O3",
            "-march=native",
            "-fno-math-errno",
            "-shared",
            "-fPIC",
            str(folder / "k.c"),
            "-o",
            str(lib),
        ],
        check=True,
    )
    library = ctypes.CDLL(str(lib))
    fn, adam = library.descend, library.adam
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float]
    adam.argtypes = [*fn.argtypes[:4], ctypes.c_void_p, ctypes.c_void_p]

    def run(x0, steps):
        a, b = np.ascontiguousarray(x0[:, 0]), np.ascontiguousarray(x0[:, 1])
        fn(a.ctypes.data, b.ctypes.data, len(a), steps, LR)
        return np.stack([a, b], axis=1)

    def run_adam(x0, steps):
        t = np.arange(1, steps + 1, dtype=np.float64)
        ss = (LR / (1 - 0.9**t)).astype(np.float32)
        ic = ((1 - 0.999**t) ** -0.5).astype(np.float32)
        a, b = np.ascontiguousarray(x0[:, 0]), np.ascontiguousarray(x0[:, 1])
        adam(a.ctypes.data, b.ctypes.data, len(a), steps, ss.ctypes.data, ic.ctypes.data)
        return np.stack([a, b], axis=1)

    return run, run_adam


def jax_impl():
    try:
        from functools import partial

        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def f(p):
        return (p[0] ** 2 + p[1] - 11) ** 2 + (p[0] + p[1] ** 2 - 7) ** 2

    g = jax.jit(jax.vmap(jax.grad(f)))

    @jax.jit
    def loop(x, steps):
        return jax.lax.fori_loop(0, steps, lambda i, x: x - LR * g(x), x)

    def run(x0, steps):
        return np.asarray(loop(jnp.asarray(x0), steps).block_until_ready())

    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(f)))

    @partial(jax.jit, static_argnums=(1, 2))
    def scan(x, steps, everything):
        def body(x, _):
            if not everything:
                return x - LR * g(x), x
            v, gx = value_and_grad(x)
            return x - LR * gx, (x, v, jnp.abs(gx).max(axis=1))

        return jax.lax.scan(body, x, None, length=steps)

    def scanned(everything):
        def run_scan(x0, steps):
            x, recorded = scan(jnp.asarray(x0), steps, everything)
            jax.block_until_ready(recorded)
            return np.asarray(x)

        return run_scan

    return run, scanned(False), scanned(True)


PROBE = r"""
import sys, time
import torch
import descentlab as dl
torch.set_num_threads(1)


def peak():  # VmHWM: a forked child starts with its parent's high-water mark, so reset it first
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


n, steps, engine, record = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
device, function = sys.argv[6], sys.argv[7]
start = dl.random(n, seed=0)
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
base = peak()
times = []
for _ in range(int(sys.argv[5])):
    began = time.perf_counter()
    run = dl.descend(
        function, start, lr=0.01, steps=steps, tol=None, record=record, engine=engine,
        device=device,
    )
    times.append(time.perf_counter() - began)
used = run.meta["engine"] + (":" + run.meta["kernel"] if run.meta["kernel"] else "")
print(used, times[0], min(times[1:] or times), base, peak())
"""


def probe(n, steps, engine, record="final", reps=1, env=None, function="himmelblau", kernel="c"):
    """One fresh process: (engine used, first call s, best later call s, rss before, peak);
    `kernel`: whether the compiled engine may use the C loop ("c") or only inductor."""
    args = [str(n), str(steps), engine, record, str(reps), DEVICE, function]
    switch = {"DESCENTLAB_C_LOOP": "on" if kernel == "c" else "off"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {}), **switch},
    ).stdout.split()
    return out[0], *map(float, out[1:])


IMPORTS = r"""
import time, torch, descentlab
began = time.perf_counter()
import torch._inductor.compile_fx
print(time.perf_counter() - began)
"""


END_TO_END_REPS = 5


def compile_times() -> dict:
    """First calls in fresh processes, 10,000 points x 100 steps, record="final".

    The C loop (`descentlab.engine.c`): c_cold, an empty kernel folder (trace, write C, gcc,
    check); c_warm, the library on disk from that call.
    Inductor (the C loop off):
    - first_ever: an empty inductor cache (another objective, booth): includes torch's one-time
      probe of the CPU's vector instructions, which it keeps in that cache;
    - cold: then Himmelblau, compiled for the first time (what a new objective costs);
    - warm: Himmelblau again with its kernels in inductor's on-disk cache (torch.compile still
      imports dynamo and traces).
    Inductor's precompiled header lives outside the cache directory (it is machine-wide and
    kept). Also: the import of dynamo and inductor alone; and 10,000 x 100 end to end with
    each engine (auto included), the median of `END_TO_END_REPS` alternating fresh processes,
    with the C library on disk."""
    cache, kernels = tempfile.mkdtemp(), tempfile.mkdtemp()
    env = {"TORCHINDUCTOR_CACHE_DIR": cache, "DESCENTLAB_KERNEL_CACHE": kernels}
    out = {}
    for label in ("c_cold", "c_warm"):
        used, first, later, *_ = probe(10_000, 100, "compiled", reps=2, env=env)
        assert used == "compiled:c", used
        out[f"first_call_{label}_s"] = first
        out[f"later_call_{label}_s"] = later
    inductor_calls = (("first_ever", "booth"), ("cold", "himmelblau"), ("warm", "himmelblau"))
    for label, function in inductor_calls:
        used, first, later, *_ = probe(
            10_000, 100, "compiled", reps=2, env=env, function=function, kernel="inductor"
        )
        assert used == "compiled:inductor", used
        out[f"first_call_{label}_s"] = first
        out[f"later_call_{label}_s"] = later
    imports = subprocess.run(
        [sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True
    )
    out["import_dynamo_inductor_s"] = float(imports.stdout)
    # end to end, a fresh process each: the median of alternating repetitions (single runs
    # of the same eager loop vary by most of a second, mostly torch's first-use imports)
    ends = {engine: [] for engine in ("eager", "compiled", "auto")}
    for _ in range(END_TO_END_REPS):
        for engine, times in ends.items():
            used, first, *_ = probe(10_000, 100, engine, env=env)
            times.append(first)
            out[f"10k_x_100_{engine}_ran"] = used
    for engine, times in ends.items():
        out[f"10k_x_100_{engine}_s"] = statistics.median(times)
        out[f"10k_x_100_{engine}_all_s"] = times
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(kernels, ignore_errors=True)
    return out


def scaling(steps: int) -> list[dict]:
    rows = []
    for n in (10**2, 10**3, 10**4, 10**5, 10**6, 10**7):
        for engine in ("eager", "compiled"):
            _, _, best, before, peak = probe(n, steps, engine, reps=3 if n < 10**7 else 2)
            rows.append(
                {
                    "points": n,
                    "engine": engine,
                    "point_steps_per_s": n * steps / best,
                    "peak_rss_bytes": peak,
                    "rss_before_bytes": before,
                    "bytes_per_point": (peak - before) / n,
                }
            )
            print(
                f"scaling {engine:8} N={n:.0e} {n * steps / best:.2e} point-steps/s, "
                f"peak {peak / 2**20:.0f} MiB",
                flush=True,
            )
    return rows


def main() -> None:
    # C loops built here go to a private folder; compile_times gives its probes one of their own
    os.environ["DESCENTLAB_KERNEL_CACHE"] = "off"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--seed-points", type=int, default=200, help="points for the (slow) seed-style loop"
    )
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument(
        "--device", default="cpu", help="cpu or cuda, for the torch and descentlab rows"
    )
    ap.add_argument("--no-compile-times", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.threads == 1 and hasattr(os, "sched_setaffinity"):  # JAX, numpy and torch alike
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        os.environ["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    torch.set_num_threads(args.threads)
    x0 = starts(args.points).astype(np.float32)
    impls = {
        "seed-style loop": (seed_style, x0[: args.seed_points]),
        "torch eager": (torch_eager, x0),
        "numpy, hand-written gradient": (numpy_hand, x0),
        "torch.compile step, (2, N)": (compiled_step, x0),
        f"torch.compile, hand-written gradient, {UNROLL} steps per call": (compiled_unrolled, x0),
        "descentlab eager": (descentlab("eager"), x0),
        "descentlab compiled": (descentlab("compiled"), x0),
        "descentlab compiled, adam": (descentlab("compiled", "adam"), x0),
        "descentlab compiled, record all": (descentlab("compiled", record="all"), x0),
        "descentlab compiled, record all, values and norms read": (
            descentlab("compiled", record="all", read=True),
            x0,
        ),
        INDUCTOR: (descentlab("compiled", kernel="inductor"), x0),
        INDUCTOR + ", adam": (descentlab("compiled", "adam", kernel="inductor"), x0),
    }
    if (g := gdv_impl()) is not None:
        impls["grad-descent-visualizer loop (float64)"] = (g, x0)
    if (c := c_kernel()) is not None:
        impls[C_GD] = (c[0], x0)
        impls[C_ADAM] = (c[1], x0)
    if (j := jax_impl()) is not None:
        impls["JAX jit(vmap(grad)) fori_loop"] = (j[0], x0)
        impls["JAX lax.scan, recording positions"] = (j[1], x0)
        impls["JAX lax.scan, recording positions, values, norms"] = (j[2], x0)
    for name, (fn, data) in impls.items():  # warm-up: compiles (at the full size), caches
        fn(data, args.steps if "scan" in name else UNROLL)  # a scan's length is static
    times = {name: [] for name in impls}
    finals = {}
    for _ in range(args.reps):
        for name, (fn, data) in impls.items():
            began = time.perf_counter()
            finals[name] = fn(data, args.steps)
            times[name].append(time.perf_counter() - began)
    reference = finals["numpy, hand-written gradient"]
    rows = []
    for name, (_, data) in impls.items():
        med = statistics.median(times[name])
        rate = len(data) * args.steps / med
        # Adam rows land elsewhere: they are checked against descentlab's compiled Adam
        against = finals["descentlab compiled, adam"] if name.endswith("adam") else reference
        diff = float(np.nanmax(np.abs(finals[name] - against[: len(data)])))
        rows.append(
            {
                "implementation": name,
                "points": len(data),
                "median_s": med,
                "point_steps_per_s": rate,
                "max_abs_diff_vs_numpy": diff,
                "all_s": times[name],
            }
        )
    rate = {r["implementation"]: r["point_steps_per_s"] for r in rows}
    ours = rate["descentlab compiled"]
    for r in rows:
        r["descentlab_compiled_over_this"] = ours / r["point_steps_per_s"]
    result = {
        "benchmark": "throughput",
        "function": "himmelblau",
        "optimizer": "gd",
        "lr": LR,
        "points": args.points,
        "steps": args.steps,
        "threads": args.threads,
        "reps": args.reps,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "device": (
            torch.cuda.get_device_name(torch.device(DEVICE))
            if DEVICE.startswith("cuda")
            else platform.processor() or "cpu"
        ),
        "rows": rows,
        "adam_over_gd": rate["descentlab compiled, adam"] / ours,
    }
    if C_ADAM in rate:  # what exact Adam costs against gd with nothing but arithmetic in the way
        result["c_adam_over_c_gd"] = rate[C_ADAM] / rate[C_GD]
    table = [
        f"Himmelblau, gradient descent lr {LR}, {args.points:,} points x {args.steps} steps, "
        f"float32, {args.threads} thread(s), torch rows on {DEVICE}, median of {args.reps} "
        "alternating repetitions",
        "",
        "| implementation | point-steps/s | descentlab compiled is | max diff vs numpy "
        "(Adam rows: vs descentlab's Adam) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['implementation']} | {r['point_steps_per_s']:.2e} | "
            f"{r['descentlab_compiled_over_this']:.2f}x | {r['max_abs_diff_vs_numpy']:.1e} |"
        )
    table.append("")
    table.append(f"Adam / gradient descent, compiled: {result['adam_over_gd']:.2f}")
    if "c_adam_over_c_gd" in result:
        table.append(f"Adam / gradient descent, hand-written C: {result['c_adam_over_c_gd']:.2f}")
    if not args.no_compile_times:
        result["compile"] = compile_times()
        table += ["", "First calls, 10,000 points x 100 steps, fresh processes (seconds):", ""]
        table += [
            f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}"
            for k, v in result["compile"].items()
            if not k.endswith("_all_s")
        ]
    if not args.no_scaling:
        result["scaling"] = scaling(50)
        table += [
            "",
            "Scaling, 50 steps, record='final', the second call (the first compiles), "
            "one fresh process per row:",
            "",
            "| points | engine | point-steps/s | peak RSS | bytes per point |",
            "|---|---|---|---|---|",
        ]
        for r in result["scaling"]:
            table.append(
                f"| {r['points']:.0e} | {r['engine']} | {r['point_steps_per_s']:.2e} | "
                f"{r['peak_rss_bytes'] / 2**20:.0f} MiB | {r['bytes_per_point']:.0f} |"
            )
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = "throughput" if DEVICE == "cpu" else "throughput_" + DEVICE.replace(":", "")
    if args.threads != 1:  # reported apart: the figures are 1 thread's
        stem += f"_{args.threads}threads"
    for name, text in (
        (f"{stem}.json", json.dumps(result, indent=2) + "\n"),
        (f"{stem}.md", "\n".join(table) + "\n"),
    ):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
    print("\n".join(table))


if __name__ == "__main__":
    main()
