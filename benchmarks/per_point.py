"""The per-point mode's speed (issue 22): a class not proven element-wise runs each point alone
as a ``(d,)`` tensor with its own optimizer. What does that cost, and against what?

Rosenbrock, float64, lr 1e-3, N points x S steps, for torch.optim.Adafactor (torch's own, not
element-wise: it factors the second moment of a matrix) and, when installed, pytorch-optimizer's
Lamb (a trust ratio per tensor):

- descentlab per point: ``dl.descend(..., optimizer=cls)``;
- the lone loops a user would write: each point in its own plain loop (zero_grad, loss,
  backward, step), one after the other; what descentlab must equal (timed on the first
  --lone-points points, 1,000 by default, and compared as point-steps per second);
- the same class on one ``(N, d)`` tensor: fast and wrong (the points mix); a floor, not an
  alternative;
- descentlab with Adam, batched, for scale.

Repetitions alternate; the median is reported. The paths of descentlab and of the lone loops
are compared too (they must be equal).

    .venv/bin/python benchmarks/per_point.py [--points 10000] [--steps 100] [--reps 3]

Writes benchmarks/results/per_point.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

import descentlab as dl
from descentlab.problem.functions import rosenbrock

RESULTS = Path(__file__).parent / "results"


def starts(n: int) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4 - 2


def descentlab_run(cls, x0, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        began = time.perf_counter()
        run = dl.descend(
            rosenbrock, x0, optimizer=cls, lr=1e-3, steps=steps, tol=None, dtype="float64"
        )
    return time.perf_counter() - began, torch.from_numpy(run.x)


def lone_loops(cls, x0, steps):
    began = time.perf_counter()
    out = []
    for start in x0:
        x = start.clone().requires_grad_(True)
        opt = cls([x], lr=1e-3)
        for _ in range(steps):
            opt.zero_grad()
            rosenbrock(x[None]).sum().backward()
            opt.step()
        out.append(x.detach())
    return time.perf_counter() - began, torch.stack(out)


def one_tensor(cls, x0, steps):
    began = time.perf_counter()
    x = x0.clone().requires_grad_(True)
    opt = cls([x], lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        rosenbrock(x).sum().backward()
        opt.step()
    return time.perf_counter() - began, x.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lone-points", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    classes = [torch.optim.Adafactor]
    try:
        from pytorch_optimizer import Lamb

        classes.append(Lamb)
    except ImportError:
        pass
    x0 = starts(args.points)
    rows = []
    t, _ = descentlab_run("adam", x0, args.steps)  # (the compiled engine may take it)
    rows.append(
        {
            "class": "Adam",
            "implementation": "descentlab, batched (proven element-wise)",
            "points": args.points,
            "seconds": t,
            "point_steps_per_s": args.points * args.steps / t,
            "descentlab_is_x_faster": None,
            "equal_to_lone": None,
            "max_rel_diff_to_lone": None,
        }
    )
    m = min(args.lone_points, args.points)
    for cls in classes:
        times = {"descentlab, per point": [], "lone loops": [], "one (N, d) tensor (mixes)": []}
        for _ in range(args.reps):
            t, ours = descentlab_run(cls, x0, args.steps)
            times["descentlab, per point"].append(t)
            t, alone = lone_loops(cls, x0[:m], args.steps)
            times["lone loops"].append(t)
            t, mixed = one_tensor(cls, x0, args.steps)
            times["one (N, d) tensor (mixes)"].append(t)
        same = torch.allclose(ours[:m], alone, rtol=1e-12, atol=0)
        mixed_diff = float(((mixed[:m] - alone).abs() / alone.abs()).max())
        points = {"lone loops": m}
        ours_rate = args.points * args.steps / statistics.median(times["descentlab, per point"])
        for label, ts in times.items():
            t = statistics.median(ts)
            rate = points.get(label, args.points) * args.steps / t
            rows.append(
                {
                    "class": cls.__name__,
                    "implementation": label,
                    "points": points.get(label, args.points),
                    "seconds": t,
                    "point_steps_per_s": rate,
                    "descentlab_is_x_faster": ours_rate / rate,
                    "equal_to_lone": same if label == "descentlab, per point" else None,
                    "max_rel_diff_to_lone": mixed_diff if "mixes" in label else None,
                }
            )
    head = (
        f"Rosenbrock, float64, {args.points:,} points x {args.steps} steps, lr 1e-3, "
        f"{args.threads} thread(s), median of {args.reps} alternating repetitions"
    )
    lines = [
        head,
        "",
        "| class | implementation | points | seconds | point-steps/s |"
        " descentlab per point, speed ratio | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = ""
        if r["equal_to_lone"] is not None:
            note = "equal to the lone loops (1e-12)" if r["equal_to_lone"] else "DIFFERS"
        if r["max_rel_diff_to_lone"] is not None:
            note = f"wrong: differs from alone by {r['max_rel_diff_to_lone']:.1e} relative"
        ratio = r["descentlab_is_x_faster"]
        lines.append(
            f"| {r['class']} | {r['implementation']} | {r['points']:,} | {r['seconds']:.2f} | "
            f"{r['point_steps_per_s']:.2e} | {'' if ratio is None else f'{ratio:.2f}x'} | {note} |"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "points": args.points,
        "steps": args.steps,
        "reps": args.reps,
        "lone_points": m,
    }
    (RESULTS / "per_point.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / "per_point.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
