"""Static figures with matplotlib. Each returns its Figure (`_common.Figure`: shown in Jupyter,
never held by pyplot); single-panel ones take `ax=`; `path=` writes the figure atomically
(``.png``, ``.svg``, ``.pdf``, ``.jpg``).

Diverged points are drawn as red crosses and their paths dashed, never as silent gaps.
Contours switch to logarithmic levels when values span more than three decades.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colors
from matplotlib.ticker import MaxNLocator

from ..descent.race import Race
from ..descent.trajectory import Trajectory
from ..errors import DescentError
from ..status import DIVERGED
from ._common import (
    PALETTE,
    SINGLE,
    Figure,
    as_runs,
    new_figure,
    objective_of,
    save_figure,
    view_box,
)

MAX_PATHS = 400  # beyond this, grids show final points rather than every path


def _evaluate(objective, box, n: int = 240):
    xs, ys, z = objective.surface(box, n)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, z


def _filled_contour(ax, objective, box, levels: int = 30, log: bool | None = None):
    """Filled contours of f over `box`: logarithmic levels on f − min when a steep rim would
    take all the colours (or when `log` says so), else linear."""
    gx, gy, z = _evaluate(objective, box)
    finite = z[np.isfinite(z)]
    lo = finite.min()
    shifted = z - lo
    spread = np.percentile(shifted, 95) / max(np.percentile(shifted, 50), 1e-12)
    if (spread > 8 if log is None else log) and shifted.max() > 0:
        eps = max(np.percentile(shifted[shifted > 0], 1), 1e-12)
        lev = np.geomspace(eps, shifted.max() + eps, levels)
        cs = ax.contourf(gx, gy, shifted + eps, levels=lev, norm=colors.LogNorm(), cmap="viridis")
        ax.contour(
            gx, gy, shifted + eps, levels=lev[::3], colors="white", linewidths=0.3, alpha=0.5
        )
        return cs, "f − min (log scale)", _decades(lev[0], lev[-1])
    lev = np.linspace(lo, finite.max(), levels)
    if lev[-1] - lev[0] <= 1e-12 * max(1.0, abs(lo)):
        lev = np.linspace(lo - 1, lo + 1, levels)  # a flat view: one colour, no noise lines
    cs = ax.contourf(gx, gy, z, levels=lev, cmap="viridis")
    ax.contour(gx, gy, z, levels=lev[1:-1:3], colors="white", linewidths=0.3, alpha=0.5)
    return cs, "f", MaxNLocator(6).tick_values(lev[0], lev[-1])


def _decades(lo: float, hi: float):
    ticks = 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    return ticks[(ticks >= lo) & (ticks <= hi)]


def _mark_minima(ax, objective, box):
    (x0, x1), (y0, y1) = box
    pts = [m for m in objective.minima if x0 <= m[0] <= x1 and y0 <= m[1] <= y1]
    if pts:
        m = np.array(pts)
        ax.scatter(
            m[:, 0],
            m[:, 1],
            marker="*",
            s=180,
            c="gold",
            edgecolors="black",
            zorder=6,
            label="global minimum",
        )


def _draw_run(ax, run: Trajectory, color, label: str | None):
    path = run.path  # (R, N, 2)
    n = run.n_points
    diverged = run.status_ == DIVERGED
    if n <= MAX_PATHS:
        alpha = 1.0 if n == 1 else max(0.15, 1.0 / np.sqrt(n))
        for i in range(n):
            style = "--" if diverged[i] else "-"
            ax.plot(
                path[:, i, 0],
                path[:, i, 1],
                style,
                color=color,
                lw=1.6 if n == 1 else 0.8,
                alpha=alpha,
                label=label if i == 0 else None,
            )
        ax.scatter(
            path[0, :, 0],
            path[0, :, 1],
            s=18 if n == 1 else 4,
            color=color,
            edgecolors="white" if n == 1 else "none",
            zorder=5,
        )
    ok = ~diverged
    ax.scatter(
        run.x_[ok, 0],
        run.x_[ok, 1],
        s=30 if n == 1 else 6,
        color=color,
        edgecolors="black",
        linewidths=0.5,
        zorder=7,
        label=label if n > MAX_PATHS else None,
    )
    if diverged.any():  # their last positions lie far outside: mark where they started
        ax.scatter(
            run.start_[diverged, 0],
            run.start_[diverged, 1],
            marker="x",
            s=30,
            c="red",
            zorder=8,
            label=f"diverged ({int(diverged.sum()):,}, at start)",
        )


def contour(
    runs: Trajectory | Race, ax=None, path=None, levels: int = 30, box=None, walks: bool = True
):
    """Filled contours of a 2-D function, every path (or final point), and its known minima.

    A Race draws one colour per optimizer with a legend. ``walks=False`` draws only the
    landscape and minima (the animations add their own moving points).
    """
    entries = as_runs(runs)
    if entries[0][1].dim != 2:
        raise DescentError(
            f"contour needs a 2-D run; this one is {entries[0][1].dim}-D (use curve for 1-D)"
        )
    obj = objective_of(entries, "contour")
    box = box or view_box(obj, [r for _, r in entries])
    fig, ax = _axes(ax, (6.4, 5.2))
    cs, label, ticks = _filled_contour(ax, obj, box, levels)
    bar = fig.colorbar(cs, ax=ax, label=label, shrink=0.85)
    lo, hi = cs.levels[0], cs.levels[-1]
    ticks = [t for t in ticks if lo - 1e-12 <= t <= hi + 1e-12]
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    for i, (name, run) in enumerate(entries if walks else []):
        _draw_run(
            ax,
            run,
            PALETTE[i % len(PALETTE)] if len(entries) > 1 else SINGLE,
            name if len(entries) > 1 else None,
        )
    for i, (_, run) in enumerate(entries if walks else []):
        colour = PALETTE[i % len(PALETTE)] if len(entries) > 1 else SINGLE
        _draw_evaluations(ax, run, colour)
    _mark_minima(ax, obj, box)
    ax.set(xlim=box[0], ylim=box[1], xlabel="x", ylabel="y", title=_title(entries))
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8, framealpha=0.8)
    return _finish(fig, path)


def _draw_evaluations(ax, run, colour, most_points: int = 10) -> None:
    """A closure optimizer's line search, as Ben Frederickson's fmin pages draw it: from each
    step's start, a thin line to every point the search tried, each a small open circle (of
    the first `most_points` walks)."""
    e = run.evaluations
    if e.empty:
        return
    e = e[e["point"] < most_points]
    label = "line search: points tried"
    for _, group in e.groupby(["step", "point"], sort=False):
        xy = group[["x", "y"]].to_numpy()
        for tx, ty in xy[1:]:  # the first is the step's own start
            ax.plot([xy[0, 0], tx], [xy[0, 1], ty], color=colour, lw=0.6, alpha=0.5, zorder=3)
        ax.scatter(
            xy[1:, 0],
            xy[1:, 1],
            s=14,
            facecolors="white",
            edgecolors=colour,
            linewidths=0.9,
            zorder=4,
            label=label,
        )
        label = None


def curve(run: Trajectory, ax=None, path=None, xlim=None, walks: bool = True):
    """A 1-D walk on its function: the curve, each step's point, and arrows between them."""
    entries = as_runs(run)
    run = entries[0][1]
    if run.dim != 1:
        raise DescentError(f"curve needs a 1-D run; this one is {run.dim}-D (use contour for 2-D)")
    obj = objective_of(entries, "curve")
    xs = run.path[:, :, 0]
    if xlim is None:
        lo, hi = float(np.nanmin(xs)), float(np.nanmax(xs))
        pad = max(0.25 * (hi - lo), 0.5)
        xlim = (lo - pad, hi + pad)
    grid = np.linspace(*xlim, 400)
    with torch.no_grad():
        ys = obj.fn(torch.tensor(grid[:, None], dtype=torch.float64)).numpy()
    fig, ax = _axes(ax, (6.4, 4.2))
    ax.plot(grid, ys, color="#3b4cc0", lw=2, label="f(x)")
    steps = np.arange(len(run.recorded))
    for i in range(run.n_points if walks else 0):
        ax.plot(xs[:, i], run.values[:, i], color=SINGLE, lw=0.8, alpha=0.6)
        sc = ax.scatter(
            xs[:, i],
            run.values[:, i],
            c=steps,
            cmap="autumn_r",
            s=28,
            zorder=5,
            edgecolors="black",
            linewidths=0.4,
        )
    if walks:
        fig.colorbar(sc, ax=ax, label="step")
    ax.set(xlabel="x", ylabel="f(x)", title=_title(entries), xlim=xlim)
    inside = ys[np.isfinite(ys)]
    ax.set_ylim(inside.min() - 0.05 * np.ptp(inside), inside.max() + 0.05 * np.ptp(inside))
    return _finish(fig, path)


def params(run: Trajectory, path=None, point: int = 0):
    """Each coordinate of one walk against the step — the example's per-dimension view."""
    run = as_runs(run)[0][1]
    names = ["x", "y", "z"][: run.dim] if run.dim <= 3 else [f"x{i + 1}" for i in range(run.dim)]
    fig, axes = new_figure(1, run.dim, figsize=(3.4 * run.dim, 3.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.plot(run.recorded, run.path[:, point, j], color=PALETTE[j % len(PALETTE)], lw=2)
        for m in run.minima:
            ax.axhline(m[j], color="gray", lw=0.6, ls=":")
        ax.set(xlabel="step", ylabel=names[j], title=f"{names[j]} by step")
    fig.suptitle(f"{run.meta['function']}: each parameter descending in its own dimension")
    fig.tight_layout()
    return _finish(fig, path)


def slices(run: Trajectory, step: int = 0, path=None, point: int = 0):
    """f along x at the current y, and along y at the current x, with the walk's position."""
    entries = as_runs(run)
    run = entries[0][1]
    if run.dim != 2:
        raise DescentError(f"slices needs a 2-D run; this one is {run.dim}-D")
    obj = objective_of(entries, "slices")
    row = int(np.searchsorted(run.recorded, min(step, int(run.recorded[-1]))))
    x, y = run.path[row, point]
    box = view_box(obj, [run])
    fig, axes = new_figure(1, 2, figsize=(9, 3.4))
    for ax, axis, (lo, hi), other in ((axes[0], 0, box[0], y), (axes[1], 1, box[1], x)):
        t = np.linspace(lo, hi, 400)
        pts = np.stack(
            [t, np.full_like(t, other)] if axis == 0 else [np.full_like(t, other), t], -1
        )
        with torch.no_grad():
            f = obj.fn(torch.tensor(pts)).numpy()
        here = (x, y)[axis]
        ax.plot(t, f, color="#3b4cc0", lw=2)
        ax.scatter(
            [here], [run.values[row, point]], color=SINGLE, s=60, zorder=5, edgecolors="black"
        )
        name, fixed = ("x", f"y = {other:.3g}") if axis == 0 else ("y", f"x = {other:.3g}")
        ax.set(xlabel=name, ylabel="f", title=f"f along {name} at {fixed}")
    fig.suptitle(f"{run.meta['function']}, step {int(run.recorded[row])}")
    fig.tight_layout()
    return _finish(fig, path)


def surface(
    run: Trajectory | Race, path=None, elev: float = 38, azim: float = -60, backend: str = "auto"
):
    """A 3-D surface with contour lines and the path on it.

    With a `path` and PyVista installed (the ``[3d]`` extra), the PyVista view is written there
    (``.png``, or ``.mp4`` for an orbit) and its path returned; otherwise — or with
    ``backend="matplotlib"`` — a matplotlib 3-D figure is returned (and saved to `path`).
    """
    from .view3d import has_pyvista, surface3d

    if backend not in ("auto", "matplotlib", "pyvista"):
        raise DescentError(f"backend must be 'auto', 'matplotlib' or 'pyvista', got {backend!r}")
    if backend == "pyvista" or (backend == "auto" and path is not None and has_pyvista()):
        if path is None:
            raise DescentError("the PyVista view renders to a file; pass path='surface.png'")
        return surface3d(run, path)
    entries = as_runs(run)
    if entries[0][1].dim != 2:
        raise DescentError("surface needs a 2-D run")
    obj = objective_of(entries, "surface")
    box = view_box(obj, [r for _, r in entries])
    gx, gy, z = _evaluate(obj, box, n=120)
    fig = Figure(figsize=(7, 5.4))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(gx, gy, z, cmap="viridis", alpha=0.75, linewidth=0, antialiased=True)
    ax.contour(gx, gy, z, levels=15, offset=np.nanmin(z), cmap="viridis", linewidths=0.6)
    for i, (name, r) in enumerate(entries):
        color = PALETTE[i % len(PALETTE)] if len(entries) > 1 else SINGLE
        for p in range(min(r.n_points, MAX_PATHS)):
            ax.plot(
                r.path[:, p, 0],
                r.path[:, p, 1],
                r.values[:, p],
                color=color,
                lw=2,
                label=name if p == 0 and len(entries) > 1 else None,
                zorder=10,
            )
    ax.view_init(elev=elev, azim=azim)
    ax.set(xlabel="x", ylabel="y", zlabel="f", title=_title(entries))
    if len(entries) > 1:
        ax.legend(fontsize=8)
    return _finish(fig, path)


def basins(run: Trajectory, ax=None, path=None, tol: float = 1e-2):
    """Each start coloured by the known minimum it reached (grey: none, black: diverged)."""
    run = as_runs(run)[0][1]
    if run.dim != 2:
        raise DescentError(f"basins needs a 2-D run; this one is {run.dim}-D")
    if not run.minima:
        raise DescentError("basins needs an objective with known minima")
    reached = np.atleast_1d(run.reached(tol))
    k = len(run.minima)
    cmap = colors.ListedColormap(["black", "#bdbdbd", *PALETTE[:k]])
    code = np.where(run.status_ == DIVERGED, 0, reached + 2)
    fig, ax = _axes(ax, (6, 5))
    shape = run.grid_shape
    if len(shape) == 2:
        xs, ys = np.unique(run.start_[:, 0]), np.unique(run.start_[:, 1])
        hx = (xs[-1] - xs[0]) / max(len(xs) - 1, 1) / 2
        hy = (ys[-1] - ys[0]) / max(len(ys) - 1, 1) / 2
        extent = (xs[0] - hx, xs[-1] + hx, ys[0] - hy, ys[-1] + hy)  # pixels centred on starts
        ax.imshow(
            code.reshape(shape),
            origin="lower",
            extent=extent,
            cmap=cmap,
            vmin=-0.5,
            vmax=k + 1.5,
            interpolation="nearest",
            aspect="auto",
        )
    else:
        ax.scatter(
            run.start_[:, 0], run.start_[:, 1], c=code, cmap=cmap, vmin=-0.5, vmax=k + 1.5, s=8
        )
    for i, m in enumerate(run.minima):
        ax.scatter([m[0]], [m[1]], marker="*", s=220, color="white", edgecolors="black", zorder=5)
        ax.scatter(
            [],
            [],
            marker="s",
            s=60,
            color=PALETTE[i % len(PALETTE)],
            label=f"to minimum {i} ({m[0]:.3g}, {m[1]:.3g}): {(reached == i).sum():,}",
        )
    n_none = int(((reached < 0) & (run.status_ != DIVERGED)).sum())
    n_div = int((run.status_ == DIVERGED).sum())
    ax.scatter([], [], marker="s", s=60, color="#bdbdbd", label=f"no global minimum: {n_none:,}")
    if n_div:
        ax.scatter([], [], marker="s", s=60, color="black", label=f"diverged: {n_div:,}")
    ax.scatter([], [], marker="*", s=120, color="white", edgecolors="black", label="global minima")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.85)
    ax.set(xlabel="x start", ylabel="y start", title=f"Basins of attraction: {_title([('', run)])}")
    return _finish(fig, path)


def lr_effects(f, start, lrs: Sequence[float] = (0.01, 0.3, 1.05), steps: int = 20, path=None):
    """One panel per learning rate on a 1-D function: too low, good, too high."""
    from ..descent.loop import descend

    runs = [descend(f, start, lr=lr, steps=steps) for lr in lrs]
    if runs[0].dim != 1:
        raise DescentError(
            "lr_effects draws 1-D functions; use race(..., lrs=[...]) with contour for 2-D"
        )
    # one x range for every panel: where the walks that do not blow up go, padded
    calm = [r.path[:, 0, 0] for r in runs if r.values[-1, 0] <= r.values[0, 0]] or [
        runs[0].path[:, 0, 0]
    ]
    lo, hi = min(float(p.min()) for p in calm), max(float(p.max()) for p in calm)
    pad = max(0.25 * (hi - lo), 0.5)
    xlim = (lo - pad, hi + pad)
    with torch.no_grad():
        floor = float(
            runs[0].objective.fn(torch.linspace(*xlim, 2001, dtype=torch.float64)[:, None]).min()
        )
    fig, axes = new_figure(1, len(lrs), figsize=(3.6 * len(lrs), 3.3), squeeze=False)
    for ax, lr, run in zip(axes[0], lrs, runs, strict=True):
        curve(run, ax=ax, xlim=xlim)
        verdict = _verdict(run, floor)
        ax.set_title(f"lr = {lr:g}: {verdict}")
    fig.tight_layout()
    return _finish(fig, path)


def montage(
    names: Sequence[str], start="grid", n: int = 15, steps: int = 100, lr: float = 0.01, path=None
):
    """Grid descents on several functions side by side — the example's montage."""
    from ..descent.loop import descend
    from ..problem.functions import get
    from ..problem.starts import grid, random

    cols = min(len(names), 2 if len(names) == 4 else 3)
    rows = -(-len(names) // cols)
    fig, axes = new_figure(rows, cols, figsize=(5.2 * cols, 4.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        view = get(name).view
        starts = (
            grid(n, view)
            if start == "grid"
            else random(n * n, view, seed=0)
            if start == "random"
            else start
        )
        run = descend(name, starts, lr=lr, steps=steps, record=max(1, steps // 50))
        contour(run, ax=ax)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return _finish(fig, path)


def _verdict(run: Trajectory, floor: float) -> str:
    """Words for a 1-D walk: it diverges, bounces across the minimum, crawls, or is good."""
    x, v = run.path[:, 0, 0], run.values[:, 0]
    if run.status_[0] == DIVERGED or v[-1] > v[0]:
        return "too high, it diverges"
    if np.any(np.diff(np.sign(np.diff(x))) != 0):
        return "high, it bounces"
    if v[-1] - floor > 0.1 * (v[0] - floor):
        return "too low, it crawls"
    return "good"


def _title(entries) -> str:
    run = entries[0][1]
    opt = "race" if len(entries) > 1 else f"{run.meta['optimizer']} lr={run.meta['lr']:g}"
    pts = f"{run.n_points:,} points" if run.n_points > 1 else "1 point"
    return f"{run.meta['function']} · {opt} · {pts}"


def _axes(ax, size):
    if ax is None:
        fig, ax = new_figure(figsize=size)
        return fig, ax
    return ax.figure, ax


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig
