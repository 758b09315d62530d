"""How long the explorer's page takes to draw one step, in headless Chromium (software WebGL).

The target: at most 50 ms a frame for a 20 x 20 grid x 4 optimizers. A frame is one move of the
step slider: the page draws the walkers (and, for single starts, the arrows) on its canvas over
the map, moves the curve's step marker and rewrites the table; the contour and the paths are not
redrawn. Measured per case over `--frames` slider moves: the time the slider's input handler
takes, and the time until the next animation frame after it (the handler plus the browser's
paint). In the same run, for comparison, the time the page takes to draw a whole reply (what
every step cost before the walkers moved to the canvas: Plotly redrew the contour and every
path).

    .venv/bin/python benchmarks/explorer_page.py [--frames 60]

Needs Chromium (Debian's `chromium`) and Playwright. Writes
benchmarks/results/explorer_page.json and explorer_page.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

CASES = {
    "1 start x 4 optimizers": "#f=himmelblau&start=-0.4,-0.65&steps=200",
    "12 x 12 grid x 4 optimizers": "#f=himmelblau&grid=12&steps=200",
    "20 x 20 grid x 4 optimizers": "#f=himmelblau&grid=20&steps=200",
    "50 x 50 grid x 4 optimizers": "#f=himmelblau&grid=50&steps=100",
}
TARGET_MS = {"20 x 20 grid x 4 optimizers": 50}

FRAMES = """async (n) => {
  const slider = document.querySelector('.dlx-slider');
  const last = Number(slider.max);
  const handler = [], frame = [];
  for (let k = 1; k <= n; k++) {
    const began = performance.now();
    slider.value = String(Math.round((k * last) / n));
    slider.dispatchEvent(new Event('input'));
    handler.push(performance.now() - began);
    await new Promise((done) => requestAnimationFrame(() => done()));
    frame.push(performance.now() - began);
  }
  return { handler, frame };
}"""

REDRAW = """async () => {
  const map = document.querySelector('.dlx-map');
  const began = performance.now();
  await window.Plotly.redraw(map);
  await new Promise((done) => requestAnimationFrame(() => done()));
  return performance.now() - began;
}"""


def main() -> None:
    from playwright.sync_api import sync_playwright

    from conftest import CHROMIUM_FLAGS, explorer_server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows = []
    with explorer_server("bench") as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        for name, view in CASES.items():
            page.goto(f"http://127.0.0.1:{port}/?token=bench{view}")
            page.wait_for_selector(".dlx[data-busy='0']", state="attached", timeout=120_000)
            page.wait_for_timeout(500)
            out = page.evaluate(FRAMES, args.frames)
            redraw = statistics.median(page.evaluate(REDRAW) for _ in range(3))
            row = {
                "case": name,
                "frames": args.frames,
                "handler_ms_median": statistics.median(out["handler"]),
                "frame_ms_median": statistics.median(out["frame"]),
                "frame_ms_p90": sorted(out["frame"])[int(0.9 * len(out["frame"])) - 1],
                "whole_map_redraw_ms": redraw,
                "target_ms": TARGET_MS.get(name),
            }
            row["redraw_over_frame"] = redraw / row["frame_ms_median"]
            rows.append(row)
            print(
                f"{name:30s} frame {row['frame_ms_median']:7.1f} ms (p90 "
                f"{row['frame_ms_p90']:.1f}), handler {row['handler_ms_median']:6.1f} ms; "
                f"a whole map redraw {redraw:7.1f} ms ({row['redraw_over_frame']:.0f}x a frame)"
            )
        browser.close()
    meta = {"machine": platform.platform(), "cpus": __import__("os").cpu_count()}
    results = HERE / "results"
    (results / "explorer_page.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# The explorer's page: one step drawn (headless Chromium, software WebGL)",
        "",
        f"`{' '.join(['.venv/bin/python', 'benchmarks/explorer_page.py', *sys.argv[1:]])}` on "
        f"{meta['machine']}, {meta['cpus']} CPUs.",
        "",
        "| case | frame ms (median) | p90 | handler ms | whole map redraw ms | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"≤ {r['target_ms']} ms" if r["target_ms"] else ""
        lines.append(
            f"| {r['case']} | {r['frame_ms_median']:.1f} | {r['frame_ms_p90']:.1f} | "
            f"{r['handler_ms_median']:.1f} | {r['whole_map_redraw_ms']:.0f} | {target} |"
        )
    (results / "explorer_page.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
