"""Does fusing several steps into one compiled call pay? The hand-written step against the
compiled engine's own kernel, 1 and 4 steps per call, side by side.

    .venv/bin/python benchmarks/unroll.py [--points 1000000] [--steps 200] [--reps 3]

Rows (Himmelblau, float32, 1 thread, (2, N) layout, final positions only):
  hand-written      the gradient written by hand, coordinates as separate tensors
  engine's step     `engine.inductor.loop._lean`, the engine's plain kernel: autograd's value
                    and gradient, the stop tests and the poison, for gd and adam; with several
                    steps per call `fusion.RowsPass` hands step k+1 the rows of step k, so
                    inductor fuses them into one loop (the engine runs `STEPS_PER_CALL` when it
                    keeps only final positions)
Writes benchmarks/results/unroll.json and unroll.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from descentlab.engine import Spec
from descentlab.engine.inductor.fusion import RowsPass
from descentlab.engine.inductor.loop import _lean
from descentlab.engine.updates import call_scalars, packed_scalars, zero_state
from descentlab.problem import functions
from descentlab.problem.objective import Objective

LR = 0.01


def engine_step(fn, kind: str, unroll: int):
    """The engine's plain kernel (`engine.inductor.loop._lean`), `unroll` steps per call."""
    step = _lean(Spec(Objective(fn=fn, dim=2), kind, False, 2, torch.float32), "plain", unroll)
    return lambda x, state, packed: step(x, state, packed, None, None)


def hand_step(unroll: int):
    def step(x, state, packed):
        a, b = x.unbind(0)
        for _ in range(unroll):
            p, q = a * a + b - 11, a + b * b - 7
            a, b = a - LR * (4 * a * p + 2 * q), b - LR * (2 * p + 4 * b * q)
        return torch.stack([a, b]), state

    return step


def measure(step, kind, unroll, points, steps, reps):
    x = torch.rand(2, points, generator=torch.Generator().manual_seed(0)) * 8 - 4
    state = zero_state(kind, x)
    h = {"lr": LR, "momentum": 0.0, "eps": 1e-8, "alpha": 0.0, "beta1": 0.9, "beta2": 0.999}
    h |= {"step_size": 0.0, "inv_c2sqrt": 0.0}  # per step: call_scalars
    packed = torch.tensor(packed_scalars(h, -math.inf, 1e9) + call_scalars(h, 10, unroll))
    began = time.perf_counter()
    step(x, state, packed)
    compile_s = time.perf_counter() - began
    best = math.inf
    for _ in range(reps):
        y, s = x, state
        began = time.perf_counter()
        for _ in range(steps // unroll):
            y, s = step(y, s, packed)
        best = min(best, time.perf_counter() - began)
    return {"compile_s": compile_s, "point_steps_per_s": points * (steps // unroll) * unroll / best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    fn = functions.get("himmelblau").fn
    options = {"post_grad_custom_pre_pass": RowsPass()}
    rows = []
    for name, kind, make in (
        ("hand-written, gd", "gd", hand_step),
        ("engine's step, gd", "gd", lambda k: engine_step(fn, "gd", k)),
        ("engine's step, adam", "adam", lambda k: engine_step(fn, "adam", k)),
    ):
        for unroll in (1, 4):
            step = torch.compile(make(unroll), options=options)
            r = measure(step, kind, unroll, args.points, args.steps, args.reps)
            rows.append({"row": name, "steps_per_call": unroll, **r})
            print(
                f"{name:22} {unroll} per call: {r['point_steps_per_s']:.2e} point-steps/s, "
                f"compiled in {r['compile_s']:.1f} s",
                flush=True,
            )
    table = [
        f"Himmelblau, {args.points:,} points x {args.steps} steps, float32, 1 thread, best of "
        f"{args.reps}",
        "",
        "| step | steps per call | point-steps/s | first call (compile) s |",
        "|---|---|---|---|",
    ]
    table += [
        f"| {r['row']} | {r['steps_per_call']} | {r['point_steps_per_s']:.2e} | "
        f"{r['compile_s']:.1f} |"
        for r in rows
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("unroll.json", json.dumps({"points": args.points, "rows": rows}, indent=2) + "\n"),
        ("unroll.md", "\n".join(table) + "\n"),
    ):
        tmp = args.out_dir / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out_dir / name)
    print("\n".join(table))


if __name__ == "__main__":
    main()
