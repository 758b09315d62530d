"""Point-steps per second of gradient descent on Himmelblau, every implementation side by side.

    .venv/bin/python benchmarks/throughput.py [--points N] [--steps S] [--reps 5] [--threads 1]

Rows (each run `--reps` times, alternating, median reported):
  seed-style loop      one scalar tensor per point, autograd, the seeds' hand-written step
  torch eager          one (N, 2) tensor, autograd, x -= lr * grad
  numpy                the gradient written by hand, vectorized
  torch.compile step   one compiled step on a (2, N) layout (the layout inductor vectorizes)
  descentlab eager     dl.descend(engine="eager", record="final")
  descentlab compiled  dl.descend(engine="compiled", record="final"), warm
  C, fused -O3         gcc -O3 -march=native, blocks of 16 points kept in vector registers
                       through all steps (the compute bound)
  JAX                  jit(vmap(grad)) in lax.fori_loop, when jax is installed

Every implementation must land on the same final points (max |difference| is reported).
Writes benchmarks/results/throughput.json and throughput.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import descentlab as dl
from descentlab.functions import himmelblau

LR = 0.01
C_SOURCE = r"""
#define B 16  /* points per block: the compiler keeps them in vector registers across steps */
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


def torch_eager(x0, steps):
    x = torch.tensor(x0, requires_grad=True)
    for _ in range(steps):
        himmelblau(x).sum().backward()
        with torch.no_grad():
            x -= LR * x.grad
        x.grad = None
    return x.detach().numpy()


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
    x = torch.tensor(x0.T.copy())
    for _ in range(steps):
        x = _compiled_step(x)
    return x.T.numpy()


def descentlab(engine):
    def run(x0, steps):
        r = dl.descend("himmelblau", x0, lr=LR, steps=steps, record="final", engine=engine)
        return r.x

    return run


def c_kernel():
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    folder = Path(tempfile.mkdtemp())
    (folder / "k.c").write_text(C_SOURCE)
    lib = folder / "k.so"
    subprocess.run(
        [cc, "-O3", "-march=native", "-shared", "-fPIC", str(folder / "k.c"), "-o", str(lib)],
        check=True,
    )
    fn = ctypes.CDLL(str(lib)).descend
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float]

    def run(x0, steps):
        a, b = np.ascontiguousarray(x0[:, 0]), np.ascontiguousarray(x0[:, 1])
        fn(a.ctypes.data, b.ctypes.data, len(a), steps, LR)
        return np.stack([a, b], axis=1)

    return run


def jax_impl():
    try:
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

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--seed-points", type=int, default=200, help="points for the (slow) seed-style loop"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x0 = starts(args.points).astype(np.float32)
    impls = {
        "seed-style loop": (seed_style, x0[: args.seed_points]),
        "torch eager": (torch_eager, x0),
        "numpy, hand-written gradient": (numpy_hand, x0),
        "torch.compile step, (2, N)": (compiled_step, x0),
        "descentlab eager": (descentlab("eager"), x0),
        "descentlab compiled": (descentlab("compiled"), x0),
    }
    if (c := c_kernel()) is not None:
        impls["C, fused, -O3 -march=native"] = (c, x0)
    if (j := jax_impl()) is not None:
        impls["JAX jit(vmap(grad)) fori_loop"] = (j, x0)
    for fn, data in impls.values():  # warm-up: compiles, caches, first-touch
        fn(data[:1000], 2)
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
        diff = float(np.nanmax(np.abs(finals[name] - reference[: len(data)])))
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
    ours = next(
        r["point_steps_per_s"] for r in rows if r["implementation"] == "descentlab compiled"
    )
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
        "rows": rows,
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    table = [
        f"Himmelblau, gradient descent lr {LR}, {args.points:,} points x {args.steps} steps, "
        f"float32, {args.threads} thread(s), median of {args.reps}",
        "",
        "| implementation | point-steps/s | descentlab compiled is | max diff vs numpy |",
        "|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['implementation']} | {r['point_steps_per_s']:.2e} | "
            f"{r['descentlab_compiled_over_this']:.2f}x | {r['max_abs_diff_vs_numpy']:.1e} |"
        )
    for name, text in (
        ("throughput.json", json.dumps(result, indent=2) + "\n"),
        ("throughput.md", "\n".join(table) + "\n"),
    ):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
    print("\n".join(table))


if __name__ == "__main__":
    main()
