"""Does fusing several steps into one compiled call pay? The hand-written step against the
compiled engine's step, 1 and 4 steps per call, side by side.

    .venv/bin/python benchmarks/unroll.py [--points 1000000] [--steps 200] [--reps 3]

Rows (Himmelblau, float32, 1 thread, (2, N) layout, final positions only):
  hand-written      the gradient written by hand, coordinates as separate tensors
  engine's step     `compiled._lean`'s arithmetic: autograd's value and gradient, the exact stop
                    checks (finite value and norm, blow-up box, tolerance) and the freeze, for
                    gd and adam; with K steps per call the rows of step k+1 are stacked for the
                    objective, and a graph pass (`split_rows`) hands the objective's coordinate
                    reads the rows themselves, so inductor fuses the K steps into one loop
Writes benchmarks/results/unroll.json and unroll.md. An experiment for the next change to the
engine, not part of it.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import time
from pathlib import Path

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

from descentlab import functions
from descentlab.updates import HYPER, coordinate_norm, update_rule, zero_state

aten = torch.ops.aten
LR = 0.01


def split_rows(graph) -> None:
    """Replace ``select(reshape(cat(rows)) [.T], j)`` (and unbind) by ``rows[j]``."""
    flat, rows_of = {}, {}
    for node in list(graph.nodes):
        target, args = node.target, node.args
        if target is aten.cat.default and (args[1] if len(args) > 1 else 0) == 0:
            vals = [getattr(i, "meta", {}).get("val") for i in args[0]]
            rows_1d = all(v is not None and v.dim() == 1 for v in vals)
            if rows_1d and len({str(v.shape[0]) for v in vals}) == 1:
                flat[node] = list(args[0])
        elif target in (aten.reshape.default, aten.view.default) and args[0] in flat:
            if len(args[1]) == 2 and args[1][0] == len(flat[args[0]]):
                rows_of[node] = (flat[args[0]], 0)
        elif target is aten.permute.default and args[0] in rows_of and list(args[1]) == [1, 0]:
            rows, axis = rows_of[args[0]]
            rows_of[node] = (rows, 1 - axis)
        elif target is aten.select.int and args[0] in rows_of:
            rows, axis = rows_of[args[0]]
            if args[1] % 2 == axis:
                node.replace_all_uses_with(rows[args[2] % len(rows)])
        elif target is aten.unbind.int and args[0] in rows_of:
            rows, axis = rows_of[args[0]]
            users = list(node.users)
            if (args[1] if len(args) > 1 else 0) % 2 == axis and all(
                u.target is operator.getitem for u in users
            ):
                for u in users:
                    u.replace_all_uses_with(rows[u.args[1]])
    graph.eliminate_dead_code()


class RowsPass(CustomGraphPass):
    def __call__(self, graph) -> None:
        split_rows(graph)

    def uuid(self) -> str:
        return "descentlab-bench-split-rows-1"


def engine_step(fn, kind: str, unroll: int):
    """The lean step's arithmetic (see `compiled._lean`), `unroll` steps per call."""
    update = update_rule(kind, False)

    def value_sum(x):
        v = fn(x.T)
        return v.sum(), v

    value_and_grad = torch.func.grad_and_value(value_sum, has_aux=True)

    def step(x, state, packed):
        h = dict(zip(HYPER, packed.unbind(0), strict=False))
        tol, limit, t = packed[len(HYPER)], packed[len(HYPER) + 1], packed[len(HYPER) + 2]
        rows = x.unbind(0)
        states = [tuple(s[j] for s in state) for j in range(len(rows))]
        for i in range(unroll):
            g, (_, v) = value_and_grad(x if i == 0 else torch.stack(rows))
            grads = g.unbind(0)
            gn = coordinate_norm(grads, math.inf)
            ok = torch.isfinite(v) & torch.isfinite(gn)
            event = ~(ok & (coordinate_norm(rows, math.inf) <= limit)) | (gn < tol)
            new, new_states = [], []
            for j, (row, gj) in enumerate(zip(rows, grads, strict=True)):
                moved, st = update(row, gj, states[j], h, t + i)
                new.append(torch.where(event, row, moved))
                new_states.append(st)
            rows, states = tuple(new), new_states
        state = tuple(torch.stack(p) for p in zip(*states, strict=True)) if state else ()
        return torch.stack(rows), state

    return step


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
    h = dict.fromkeys(HYPER, 0.0) | {"lr": LR, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    h |= {"step_size": LR / (1 - 0.9), "c2sqrt": (1 - 0.999) ** 0.5}
    packed = torch.tensor([h[k] for k in HYPER] + [-math.inf, 1e9, 1.0])
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
