"""Server time of the live explorer per interaction, in a long-lived process.

The issue's targets: a drag or slider move answered within 50 ms of server time for
4 optimizers x 1 start x 500 steps, and within 300 ms for a 20 x 20 grid x 2 optimizers x
200 steps. Server time here is what `descentlab explore` spends on one request: checking it,
running the engine, the glyphs, and encoding the JSON reply (`compute.answer` + `json.dumps`),
measured over a simulated drag (the start moved a little each request). The same request
through the ASGI stack (Starlette's TestClient, in process) is measured too, and, in the same
run, the alternatives: the same race run eagerly (torch.optim, as `auto` chose for small runs
before the explorer warmed the C loop) and with `auto` in this process.

    .venv/bin/python benchmarks/explorer.py [--drags 40]

Writes benchmarks/results/explorer.json and explorer.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import descentlab as dl
from descentlab.explorer import compute, server

CASES = {
    "4 opt x 1 start x 500 steps": {
        "f": "himmelblau",
        "opt": ["gd", "momentum", "rmsprop", "adam"],
        "lr": [0.01, 0.01, 0.01, 0.05],
        "start": [[-0.4, -0.65]],
        "steps": 500,
    },
    "20 x 20 grid x 2 opt x 200 steps": {
        "f": "himmelblau",
        "opt": ["gd", "adam"],
        "lr": [0.01, 0.05],
        "grid": 20,
        "steps": 200,
    },
}
TARGET_MS = {"4 opt x 1 start x 500 steps": 50, "20 x 20 grid x 2 opt x 200 steps": 300}


def drag(request: dict, k: int) -> dict:
    """The request after the k-th move of a drag (or, for a grid, of the lr slider)."""
    out = {**request, "surface": 0}
    if "start" in out:
        x, y = out["start"][0]
        out["start"] = [[x + 0.01 * k, y - 0.005 * k]]
    else:
        out["lr"] = [out["lr"][0] * (1 + 0.002 * k), out["lr"][1]]
    return out


def timed(fn, n: int) -> list[float]:
    out = []
    for k in range(n):
        began = time.perf_counter()
        fn(k)
        out.append((time.perf_counter() - began) * 1e3)
    return out


def summary(ms: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "max_ms": round(max(ms), 2),
        "n": len(ms),
    }


def race_alone(request: dict, engine: str):
    start = (
        dl.grid(request["grid"], bounds=((-5, 5), (-5, 5)))
        if "grid" in request
        else [tuple(request["start"][0])]
    )
    return dl.race(
        request["f"],
        start=start,
        optimizers=request["opt"],
        lr=dict(zip(request["opt"], request["lr"], strict=True)),
        steps=request["steps"],
        engine=engine,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drags", type=int, default=40)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    client = TestClient(server.app())
    results = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "cases": {},
    }
    for name, request in CASES.items():
        began = time.perf_counter()
        first = compute.answer(request)  # the first request of a function: builds its loops
        first_ms = (time.perf_counter() - began) * 1e3
        assert "error" not in first, first
        compute.answer(drag(request, 0))  # warm
        server_ms = timed(lambda k, r=request: json.dumps(compute.answer(drag(r, k))), args.drags)
        http_ms = timed(
            lambda k, r=request: client.post("/api/run", json=drag(r, k)).raise_for_status(),
            args.drags,
        )
        eager_ms = timed(lambda k, r=request: race_alone(r, "eager"), max(5, args.drags // 4))
        auto_ms = timed(lambda k, r=request: race_alone(r, "auto"), max(5, args.drags // 4))
        size = len(json.dumps(compute.answer(drag(request, 1))))
        results["cases"][name] = {
            "target_ms": TARGET_MS[name],
            "first_request_ms": round(first_ms, 1),
            "server": summary(server_ms),
            "through_asgi": summary(http_ms),
            "race_eager": summary(eager_ms),
            "race_auto": summary(auto_ms),
            "reply_bytes": size,
            "kernels": [r["kernel"] for r in first["runs"]],
        }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "explorer.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| case | target | server median (p95) | through ASGI median | eager race | auto race |"
        " eager / server | reply |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["cases"].items():
        s, h, e, a = r["server"], r["through_asgi"], r["race_eager"], r["race_auto"]
        lines.append(
            f"| {name} | {r['target_ms']} ms | {s['median_ms']} ms ({s['p95_ms']}) |"
            f" {h['median_ms']} ms | {e['median_ms']} ms | {a['median_ms']} ms |"
            f" {e['median_ms'] / s['median_ms']:.1f}x | {r['reply_bytes'] / 1e6:.2f} MB |"
        )
    lines.append("")
    lines.append(
        "first request of each case (builds the C loops when not on disk): "
        + ", ".join(f"{n}: {r['first_request_ms']} ms" for n, r in results["cases"].items())
    )
    text = "\n".join(lines) + "\n"
    (out / "explorer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
