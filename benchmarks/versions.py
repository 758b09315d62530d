"""Before and after: descentlab's own rows of throughput.py for two source trees, measured in
the same run, alternating, each in a fresh process on one core, so that a change is compared
with what it replaced under the same load.

    .venv/bin/python benchmarks/versions.py --base /path/to/old/src [--reps 3]

Rows (Himmelblau, lr 0.01, float32, 1 thread): the C loop with gd and Adam (1e6 points x 100
steps, final positions), gd recording every step (and reading its values and norms), inductor
with the C loop off (gd and Adam), the eager engine (1e5 points), and the first call of
10,000 x 100 with an empty kernel cache and with the library on disk.
Writes benchmarks/results/versions.json and versions.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = r"""
import os, sys, time
import torch
torch.set_num_threads(1)
import descentlab as dl
kind, optimizer, record, read, n, steps, reps = sys.argv[1:8]
if kind == "inductor":  # the switch of either version
    os.environ["DESCENTLAB_C_LOOP"] = "off"
    try:
        from descentlab import compiled
        compiled.USE_C = False
    except ImportError:
        pass
x0 = dl.random(int(n), seed=0)
times = []
for _ in range(int(reps)):
    began = time.perf_counter()
    run = dl.descend("himmelblau", x0, optimizer=optimizer, lr=0.01, steps=int(steps),
                     tol=None, record=record, engine="eager" if kind == "eager" else "compiled")
    if read == "1":
        run.values, run.grad_norms
    times.append(time.perf_counter() - began)
assert kind == "eager" or run.meta["kernel"] == kind, run.meta
print(times[0], min(times[1:] or times))
"""

# label: (backend, optimizer, record, read, points, steps, repetitions in a process)
ROWS = {
    "C loop, gd": ("c", "gd", "final", "0", 10**6, 100, 4),
    "C loop, adam": ("c", "adam", "final", "0", 10**6, 100, 4),
    "C loop, gd, record all": ("c", "gd", "all", "0", 10**6, 100, 4),
    "C loop, gd, record all, values and norms read": ("c", "gd", "all", "1", 10**6, 100, 4),
    "inductor, gd": ("inductor", "gd", "final", "0", 10**6, 100, 4),
    "inductor, adam": ("inductor", "adam", "final", "0", 10**6, 100, 4),
    "eager, gd": ("eager", "gd", "final", "0", 10**5, 100, 3),
}


def probe(src: str, row: tuple, cache: str) -> tuple[float, float]:
    kind, optimizer, record, read, n, steps, reps = row
    if kind == "inductor":  # (an older tree built AOTInductor packages in the background)
        cache = "off"
    env = {**os.environ, "PYTHONPATH": src, "DESCENTLAB_KERNEL_CACHE": cache}
    argv = [kind, optimizer, record, read, str(n), str(steps), str(reps)]
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the old tree's src folder")
    ap.add_argument("--new", default=str(Path(__file__).parent.parent / "src"))
    ap.add_argument("--reps", type=int, default=3, help="alternations of the two versions")
    ap.add_argument("--only", default="", help="rows whose label contains this text")
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    rows = {label: row for label, row in ROWS.items() if args.only in label}
    versions = {"before": args.base, "after": args.new}
    caches = {name: tempfile.mkdtemp() for name in versions}
    rates = {(label, name): [] for label in rows for name in versions}
    first = {(label, name): [] for label in ("cold", "warm") for name in versions}
    for rep in range(args.reps):
        for name, src in versions.items():
            empty = tempfile.mkdtemp()  # a first call with nothing built, then with it built
            row = ("c", "gd", "final", "0", 10_000, 100, 1)
            first["cold", name].append(probe(src, row, empty)[0])
            first["warm", name].append(probe(src, row, empty)[0])
            for label, row in rows.items():
                _, best = probe(src, row, caches[name])
                rates[label, name].append(row[4] * row[5] / best)
                print(f"{rep} {name:6} {label:48} {rates[label, name][-1]:.3g}", flush=True)
    results = {"rows": [], "first_calls": []}
    lines = [
        "descentlab before and after, same run, alternating fresh processes on one core; "
        f"medians of {args.reps}",
        "",
        "| row | before (point-steps/s) | after | after / before |",
        "|---|---|---|---|",
    ]
    for label in rows:
        before = statistics.median(rates[label, "before"])
        after = statistics.median(rates[label, "after"])
        results["rows"].append(
            {
                "row": label,
                "before": before,
                "after": after,
                "ratio": after / before,
                "before_all": rates[label, "before"],
                "after_all": rates[label, "after"],
            }
        )
        lines.append(f"| {label} | {before:.3g} | {after:.3g} | {after / before:.2f} |")
    lines += ["", "| first call, 10,000 x 100 (s) | before | after |", "|---|---|---|"]
    for label in ("cold", "warm"):
        before = statistics.median(first[label, "before"])
        after = statistics.median(first[label, "after"])
        results["first_calls"].append({"call": label, "before_s": before, "after_s": after})
        lines.append(f"| {label} | {before:.3f} | {after:.3f} |")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = f"versions_{args.only.replace(' ', '_').replace(',', '')}" if args.only else "versions"
    (args.out_dir / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out_dir / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
