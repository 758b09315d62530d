"""How long pictures take: the issue's two animation targets, measured end to end.

    .venv/bin/python benchmarks/animation.py [--reps 3]

* a 2,500-point grid descent of 200 steps to a 100-frame GIF and MP4 (target ≤ 20 s);
* a PyVista 3-D orbit of 100 paths, 120 frames, to MP4 (target ≤ 30 s; needs the [3d] extra).

Writes benchmarks/results/animation.json and prints a markdown table (medians of --reps runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import descentlab as dl


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp())
    grid = dl.descend("six_hump_camel", start=dl.grid(50), lr=0.01, steps=200)
    paths = dl.descend("himmelblau", start=dl.grid(10), lr=0.01, steps=200)
    cases = {
        "2,500-point grid, 100-frame GIF": (lambda: dl.animate(grid, out / "g.gif"), 20.0),
        "2,500-point grid, 100-frame MP4": (lambda: dl.animate(grid, out / "g.mp4"), 20.0),
    }
    if dl.plot.has_pyvista():
        cases["3-D, 100 paths, 120-frame MP4"] = (
            lambda: dl.plot.surface3d(paths, out / "o.mp4", seconds=6, fps=20),
            30.0,
        )
    results = {}
    for name, (fn, target) in cases.items():
        runs = [timed(fn) for _ in range(args.reps)]
        results[name] = {"median_s": statistics.median(runs), "all_s": runs, "target_s": target}
    report = Path(__file__).parent / "results" / "animation.json"
    report.parent.mkdir(exist_ok=True)
    tmp = report.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(report)
    print("| case | median s | target s | within |")
    print("|---|---|---|---|")
    for name, r in results.items():
        ok = "yes" if r["median_s"] <= r["target_s"] else "NO"
        print(f"| {name} | {r['median_s']:.1f} | {r['target_s']:.0f} | {ok} |")
    print(f"\nwrote {report}")


if __name__ == "__main__":
    main()
