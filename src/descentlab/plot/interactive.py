"""One self-contained interactive page (plotly) for a run or a race.

Side by side, a 2-D contour and a 3-D surface of the landscape; every walk animated on both
with play/pause and a step slider; one legend entry per optimizer that toggles it in both
views; hovering a point shows its step, position, value and gradient norm. plotly.js is
inlined, so the page works with no network (≈ 5 MB for a 4-optimizer × 200-step race).

The contour map is a picture behind the axes (the static figure's own levels, drawn by
matplotlib), not a plotly trace: plotly.js blanks contour traces while frames play
(plotly.js #4491, plotly.py #2151). Its colour bar is a plotly one, on an empty trace.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import DescentError
from ..files import atomic_file
from ..status import DIVERGED
from ._common import Figure, as_runs, check_output, colour, objective_of, view_box

HOVER = (
    "<b>%{fullData.name}</b><br>step %{customdata[0]}<br>x = %{x:.4g}, y = %{y:.4g}"
    "<br>f = %{customdata[1]:.4g}<br>|∇f| = %{customdata[2]:.3g}<extra></extra>"
)
MAX_TRAILS = 60  # beyond this many points, show positions only
TAIL = 10  # recorded steps of bright tail behind each moving point


def html(obj, path, frames: int = 100, surface: bool = True, grid: int = 80) -> Path:
    """Write the interactive page for a 2-D Trajectory or Race to `path` (``.html``).

    Args:
        frames: the most animation frames (long runs are subsampled evenly).
        surface: add the 3-D surface view beside the contour.
        grid: points per axis of the landscape sampling.
    """
    p = check_output(path, {".html", ".htm"}, "page")
    entries = as_runs(obj)
    if entries[0][1].dim != 2:
        raise DescentError(f"html draws 2-D runs; this one is {entries[0][1].dim}-D")
    obj_fn = objective_of(entries, "html")
    fig = figure(entries, obj_fn, frames, surface, grid)
    with atomic_file(p) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True, auto_play=False)
    return p


def figure(
    entries, objective, frames: int = 100, surface: bool = True, grid: int = 80
) -> go.Figure:
    """The plotly Figure behind `html`."""
    box = view_box(objective, [r for _, r in entries])
    xs, ys, z = objective.surface(box, grid)
    cols = 2 if surface else 1
    fig = make_subplots(
        rows=1,
        cols=cols,
        column_widths=[0.5, 0.5][:cols],
        specs=[[{"type": "xy"}, {"type": "scene"}][:cols]],
        subplot_titles=["contour", "surface"][:cols],
        horizontal_spacing=0.1,
    )
    _landscape(fig, objective, box, surface)
    if surface:
        fig.add_trace(
            go.Surface(
                x=xs,
                y=ys,
                z=z,
                colorscale="Viridis",
                showscale=False,
                opacity=0.85,
                name="surface",
                hoverinfo="skip",
                contours={"z": {"show": True, "usecolormap": True, "project": {"z": True}}},
            ),
            row=1,
            col=2,
        )
    rows = even_rows(max(len(r.recorded) for _, r in entries), frames)
    dynamic = []  # indices of the traces that frames update
    for i, (label, run) in enumerate(entries):
        for trace, col in _static_paths(run, label, colour(i, len(entries)), surface):
            fig.add_trace(trace, row=1, col=col)
    for i, (label, run) in enumerate(entries):
        color = colour(i, len(entries))
        for trace, col in _traces(run, label, color, rows[0], surface):
            fig.add_trace(trace, row=1, col=col)
            dynamic.append(len(fig.data) - 1)
    minima = [
        m
        for m in objective.minima
        if box[0][0] <= m[0] <= box[0][1] and box[1][0] <= m[1] <= box[1][1]
    ]
    if minima:  # last, so no path hides them
        m = np.array(minima)
        fig.add_trace(
            go.Scatter(
                x=m[:, 0],
                y=m[:, 1],
                mode="markers",
                name="global minima",
                marker={"symbol": "star", "size": 14, "color": "gold", "line": {"width": 1}},
            ),
            row=1,
            col=1,
        )
    fig.frames = [
        go.Frame(
            name=str(k),
            data=[
                t
                for i, (label, run) in enumerate(entries)
                for t, _ in _traces(run, label, colour(i, len(entries)), k, surface)
            ],
            traces=dynamic,
        )
        for k in rows
    ]
    # the timeline runs to the longest walk; one that stopped early keeps its last place
    steps_of = max((run.recorded for _, run in entries), key=len)
    slider_steps = [
        {
            "method": "animate",
            "label": str(int(steps_of[min(k, len(steps_of) - 1)])),
            "args": [
                [str(k)],
                {
                    "mode": "immediate",
                    "frame": {"duration": 0, "redraw": True},
                    "transition": {"duration": 0},
                },
            ],
        }
        for k in rows
    ]
    play = {
        "frame": {"duration": 60, "redraw": True},
        "fromcurrent": True,
        "transition": {"duration": 0},
    }
    pause = {
        "frame": {"duration": 0, "redraw": False},
        "mode": "immediate",
        "transition": {"duration": 0},
    }
    first = entries[0][1]
    opt = "race" if len(entries) > 1 else f"{first.meta['optimizer']} lr={first.meta['lr']:g}"
    fig.update_layout(
        title=f"{first.meta['function']} · {opt} · {_points(first.n_points)}",
        height=620,
        margin={"l": 40, "r": 20, "t": 70, "b": 40},
        legend={"orientation": "h", "y": -0.08, "groupclick": "togglegroup"},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.0,
                "y": 1.12,
                "showactive": False,
                "buttons": [
                    {"label": "▶ play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]},
                ],
            }
        ],
        sliders=[
            {
                "active": 0,
                "x": 0.12,
                "len": 0.86,
                "y": 1.1,
                "yanchor": "bottom",
                "currentvalue": {"prefix": "step "},
                "steps": slider_steps,
            }
        ],
        scene={
            "xaxis_title": "x",
            "yaxis_title": "y",
            "zaxis_title": "f",
            "camera": {"eye": {"x": 1.5, "y": -1.5, "z": 1.1}},
        },
    )
    fig.update_xaxes(
        range=list(box[0]), title_text="x", showgrid=False, zeroline=False, row=1, col=1
    )
    fig.update_yaxes(
        range=list(box[1]), title_text="y", showgrid=False, zeroline=False, row=1, col=1
    )
    return fig


def even_rows(n_rows: int, n_frames: int) -> np.ndarray:
    """Recorded rows at a constant stride, so the slider's steps are evenly spaced (0, 2, 4,
    ...), the last row always included: at most ``n_frames + 1`` of them."""
    stride = max(1, -(-(n_rows - 1) // max(1, n_frames)))
    rows = np.arange(0, n_rows, stride)
    return rows if rows[-1] == n_rows - 1 else np.append(rows, n_rows - 1)


def _landscape(fig, objective, box, surface: bool) -> None:
    """The contour map as a picture filling the 2-D axes, its colour bar beside them."""
    from matplotlib.colors import LogNorm

    from .static import _filled_contour

    drawn = Figure(figsize=(6, 6))
    ax = drawn.add_axes((0, 0, 1, 1))
    cs, label, ticks = _filled_contour(ax, objective, box)
    ax.set(xlim=box[0], ylim=box[1])
    ax.set_axis_off()
    buffer = io.BytesIO()
    drawn.savefig(buffer, format="png", dpi=110)
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    (x0, x1), (y0, y1) = box
    fig.add_layout_image(
        source=source,
        xref="x",
        yref="y",
        x=x0,
        y=y1,
        sizex=x1 - x0,
        sizey=y1 - y0,
        sizing="stretch",
        layer="below",
    )
    log = isinstance(cs.norm, LogNorm)
    levels = np.log10(cs.levels) if log else np.asarray(cs.levels)
    ticks = [tick for tick in ticks if cs.levels[0] <= tick <= cs.levels[-1]]
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name="landscape",
            showlegend=False,
            hoverinfo="skip",
            marker={
                "colorscale": "Viridis",
                "cmin": float(levels[0]),
                "cmax": float(levels[-1]),
                "color": [float(levels[0])],
                "showscale": True,
                "colorbar": {
                    "title": {"text": label, "side": "right"},
                    "x": 0.45 if surface else 1.0,
                    "len": 0.8,
                    "thickness": 14,
                    "tickvals": [float(np.log10(v)) if log else float(v) for v in ticks],
                    "ticktext": [f"{v:g}" for v in ticks],
                },
            },
        ),
        row=1,
        col=1,
    )


def _points(n: int) -> str:
    return "1 point" if n == 1 else f"{n:,} points"


def _lines(run, rows_from: int, rows_to: int, keep) -> tuple[np.ndarray, ...]:
    """x, y, f of every kept point's path between two recorded rows, NaN between points
    (float32 arrays, which plotly writes as compact base64)."""
    seg = slice(rows_from, rows_to + 1)
    n = rows_to + 1 - rows_from
    parts = [np.full((int(keep.sum()), n + 1), np.nan, dtype=np.float32) for _ in range(3)]
    for part, data in zip(
        parts, (run.path[seg, :, 0], run.path[seg, :, 1], run.values[seg]), strict=True
    ):
        part[:, :n] = data[:, keep].T
    return tuple(part.reshape(-1) for part in parts)


def _line_pair(x, y, f, label, color, widths, opacity, surface: bool):
    """A path as a 2-D line on the contour and, with `surface`, a 3-D line on the surface;
    both in the optimizer's legend group and silent on hover."""
    common = {
        "mode": "lines",
        "name": label,
        "legendgroup": label,
        "showlegend": False,
        "hoverinfo": "skip",
        "opacity": opacity,
    }
    items = [(go.Scatter(x=x, y=y, line={"color": color, "width": widths[0]}, **common), 1)]
    if surface:
        items.append(
            (go.Scatter3d(x=x, y=y, z=f, line={"color": color, "width": widths[1]}, **common), 2)
        )
    return items


def _static_paths(run, label, color, surface: bool):
    """Each whole path once, lighter than the moving tail, so the frames need carry only markers
    and short tails."""
    if run.n_points > MAX_TRAILS:
        return []
    x, y, f = _lines(run, 0, len(run.recorded) - 1, run.status_ != DIVERGED)
    return _line_pair(x, y, f, label, color, (2, 3), 0.6, surface)


def _traces(run, label, color, row: int, surface: bool):
    """The moving traces of one run at recorded row `row`: points and their short tails."""
    r = min(int(row), len(run.recorded) - 1)
    step = int(run.recorded[r])
    keep = ~((run.status_ == DIVERGED) & (run.steps_ <= step))
    pos = run.path[r][keep].astype(np.float32)
    val = run.values[r][keep].astype(np.float32)
    custom = np.column_stack([val, run.grad_norms[r][keep]]).astype(np.float32)
    hover = HOVER.replace("%{customdata[0]}", str(step)).replace("customdata[1]", "customdata[0]")
    hover = hover.replace("customdata[2]", "customdata[1]")
    few = run.n_points <= MAX_TRAILS
    size = 9 if run.n_points == 1 else 5
    items, tails = [], []
    if few:
        x, y, f = _lines(run, max(0, r - TAIL), r, keep)
        tails = _line_pair(x, y, f, label, color, (4, 6), 1.0, surface)
    items += [item for item in tails if item[1] == 1]
    items.append(
        (
            go.Scatter(
                x=pos[:, 0],
                y=pos[:, 1],
                mode="markers",
                name=label,
                legendgroup=label,
                marker={"color": color, "size": size, "line": {"width": 1, "color": "black"}},
                customdata=custom,
                hovertemplate=hover,
            ),
            1,
        )
    )
    if surface:
        items += [item for item in tails if item[1] == 2]
        items.append(
            (
                go.Scatter3d(
                    x=pos[:, 0],
                    y=pos[:, 1],
                    z=val,
                    mode="markers",
                    name=label,
                    legendgroup=label,
                    showlegend=False,
                    hoverinfo="skip",
                    marker={"color": color, "size": 5 if run.n_points == 1 else 2},
                ),
                2,
            )
        )
    return items
