"""Pictures of training seen as a descent: the loss on a plane through the weights with the
paths projected on it and their residuals, the line from the initial to the final weights, and
sharpness against the stability limit 2/lr.

Every plane says on its picture how much of the path it explains and how far the path lies
from it: a plane is a slice of the weight space, not the whole of it.
"""

from __future__ import annotations

import numpy as np

from ..errors import DescentError
from ._common import PALETTE, Figure, save_figure

START, END = "o", "*"


def _title(plane) -> str:
    what = {
        "pca": "PCA plane of the path",
        "random": "random filter-normalized plane",
        "given": "plane of the given directions",
        "interpolate": "line from the initial to the final weights",
    }[plane.method]
    return f"{plane.data} loss on the {what}"


def _axis_label(plane, i: int) -> str:
    name = ("α", "β")[i]
    if plane.explained is not None:
        return f"{name}: PC{i + 1}, {plane.explained[i]:.1%} of the path's variance"
    return f"{name} (direction {i + 1})"


def landscape(plane, path=None, levels: int = 30, residual: bool = True):
    """The loss on the plane (filled contours, log levels where it spans decades) with every
    kept path (a circle at its start, a star at its end) and, beside it, each path's residual:
    its true loss against the plane's loss under it, and its distance from the plane.

    On the init-to-final line: the training (and validation) loss along it, with the initial
    (α = 0) and final (α = 1) weights marked.
    """
    if plane.dim == 1:
        return _line(plane, path)
    from .static import _filled_contour

    cols = 2 if residual and plane.paths else 1
    fig = Figure(figsize=(6.2 * cols + 0.6, 5.4))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    ax = axes[0]
    box = plane.view
    loss = plane.loss[np.isfinite(plane.loss)]
    # a trained network's loss spans decades between its start and its end: log levels
    log = bool(loss.min() > 0 and loss.max() / loss.min() > 10)
    cs, label, ticks = _filled_contour(ax, plane, box, levels, log=log)
    bar = fig.colorbar(cs, ax=ax, label=label.replace("f", "loss", 1), shrink=0.85)
    lo, hi = cs.levels[0], cs.levels[-1]
    ticks = [t for t in ticks if lo - 1e-12 <= t <= hi + 1e-12]
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    for i, projected in enumerate(plane.paths):
        colour = _colour(plane, i)
        xy = projected.coords
        ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=1.6, label=projected.label)
        ax.scatter(*xy[:, :2].T, s=10, color=colour, zorder=5)
        ax.scatter(*xy[0], marker=START, s=60, color="white", edgecolors=colour, zorder=6)
        ax.scatter(*xy[-1], marker=END, s=200, color=colour, edgecolors="black", zorder=7)
    ax.scatter(
        0, 0, marker="P", s=70, color="white", edgecolors="black", zorder=4, label="plane's center"
    )
    ax.set(xlim=box[0], ylim=box[1], xlabel=_axis_label(plane, 0), ylabel=_axis_label(plane, 1))
    ax.set_title(_title(plane), fontsize=11)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.text(0.01, 0.005, plane.note, fontsize=8.5, color=_note_colour(plane), ha="left")
    if cols == 2:
        _residual(axes[1], plane)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _finish(fig, path)


def _residual(ax, plane) -> None:
    """Each path's true loss and the plane's loss under it, by step (log scale), and its
    distance from the plane on the right-hand axis."""
    far = ax.twinx()
    for i, projected in enumerate(plane.paths):
        colour = _colour(plane, i)
        steps = projected.steps
        ax.plot(steps, projected.true_loss, "-", color=colour, lw=1.8, label="true loss")
        ax.plot(steps, projected.plane_loss, "--", color=colour, lw=1.2, label="plane's loss")
        far.plot(steps, projected.distance, ":", color=colour, lw=1.2, label="distance")
    positive = np.concatenate([np.r_[p.true_loss, p.plane_loss] for p in plane.paths])
    if positive.min() > 0 and positive.max() / positive.min() > 20:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss (solid: true; dashed: the plane's, under it)")
    far.set_ylabel("distance from the plane (dotted)")
    ax.set_title("is the plane telling the truth?", fontsize=11)
    handles = [
        ax.get_lines()[0],
        ax.get_lines()[1],
        far.get_lines()[0],
    ]
    ax.legend(handles, ["true loss", "plane's loss", "distance"], fontsize=8, loc="upper right")


def _line(plane, path):
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.subplots()
    alphas = plane.alphas
    ax.plot(alphas, plane.loss, color="#3b4cc0", lw=2, label=f"{plane.data} loss")
    if plane.valid_loss is not None:
        ax.plot(alphas, plane.valid_loss, color="#e6194b", lw=1.8, ls="--", label="valid loss")
    for at, name in ((0.0, "initial weights"), (1.0, "final weights")):
        ax.axvline(at, color="grey", lw=0.8, ls=":")
        ax.text(at, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=8, va="top")
    for i, projected in enumerate(plane.paths):
        colour = PALETTE[(i + 2) % len(PALETTE)]
        ax.scatter(
            projected.coords[:, 0],
            projected.true_loss,
            s=14,
            color=colour,
            zorder=5,
            label="kept weights (true loss)",
        )
    positive = plane.loss[np.isfinite(plane.loss)]
    if positive.min() > 0 and positive.max() / positive.min() > 50:
        ax.set_yscale("log")
    ax.set(xlabel="α (0: initial weights, 1: final)", ylabel="loss", title=_title(plane))
    ax.legend(fontsize=8)
    if plane.paths:
        fig.text(0.01, 0.005, plane.note, fontsize=8.5, color="#444", ha="left")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _finish(fig, path)


def landscape3d(plane, path=None, **kwargs):
    """The plane as a surface with the paths on it: PyVista's view in a file where it is
    installed, else matplotlib's 3-D figure."""
    from . import static

    if plane.dim != 2:
        raise DescentError("a 3-D view needs a plane; this landscape is a line (use .plot())")
    walks = plane.walks() if plane.paths else None
    if walks is None:
        raise DescentError("the plane has no kept path to draw; fit with keep_weights=k")
    return static.surface(walks, path=path, **kwargs)


def landscape_animation(plane, path=None, **kwargs):
    """The kept paths walking over the plane, one kept row per frame."""
    from .animate import animate

    if plane.dim != 2 or not plane.paths:
        raise DescentError("an animation needs a plane with kept paths; fit with keep_weights=k")
    return animate(plane.walks(), path, **kwargs)


def sharpness(learn, path=None, ax=None):
    """The sharpness measured during fits (``fit(sharpness=k)``) by step, with the stability
    limit of the optimizer at each step's rate (2/lr for gradient descent) and the loss."""
    from ..training.sharpness import threshold

    rows = learn.history["sharpness"]
    if not rows:
        raise DescentError("no sharpness was measured: fit with sharpness=k (every k steps)")
    steps = np.array([r[0] for r in rows])
    values = np.array([r[1] for r in rows])
    limits = [threshold(learn.plan, r[2]) for r in rows]
    own = ax is None
    if own:
        fig = Figure(figsize=(7.2, 4.6))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.plot(steps, values, "o-", color="#3b4cc0", lw=1.8, ms=3, label="sharpness (top eigenvalue)")
    formula = limits[0][1]
    ax.plot(steps, [v for v, _ in limits], "--", color="#e6194b", lw=1.5, label=formula)
    loss = np.asarray(learn.history["loss"])
    if len(loss):
        other = ax.twinx()
        other.plot(np.arange(1, len(loss) + 1), loss, color="grey", lw=0.9, alpha=0.7)
        other.set_ylabel("training loss (grey)")
        if loss.min() > 0 and loss.max() / loss.min() > 20:
            other.set_yscale("log")
    adaptive = learn.plan.name not in ("gd", "sgd", "momentum", "nesterov")
    note = " (for gradient descent; a guide only for adaptive optimizers)" if adaptive else ""
    ax.set(
        xlabel="step",
        ylabel="largest Hessian eigenvalue",
        title=f"sharpness against the stability limit {formula}{note}",
    )
    ax.set_ylim(bottom=0, top=max(values.max(), max(v for v, _ in limits)) * 1.15)
    ax.legend(loc="lower right", fontsize=8)
    return _finish(fig, path) if own else fig


def _colour(plane, i: int) -> str:
    return "#ff5a36" if len(plane.paths) == 1 else PALETTE[i % len(PALETTE)]


def _note_colour(plane) -> str:
    little = plane.explained is not None and sum(plane.explained) < 0.5
    return "#c0392b" if little else "#444"


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig
