"""Animations of descents, races and fits as GIF (Pillow) or MP4 (the ffmpeg binary that
imageio-ffmpeg ships, so no system ffmpeg is needed).

The landscape is drawn once; each frame moves only the points and their trails, so a
2,500-point grid over 100 frames renders in seconds. Long runs are subsampled evenly to
``fps * seconds`` frames; the first and last recorded steps are always shown.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import animation

from ..errors import DescentError
from ..files import atomic_file
from ..progress import Progress
from ..status import DIVERGED
from ._common import PALETTE, SINGLE, as_runs, check_output, new_figure
from .static import MAX_PATHS, contour, curve

FORMATS = {".gif", ".mp4"}
TAIL = 8  # recorded steps of trail behind each point of a batch


def frame_rows(n_rows: int, n_frames: int) -> np.ndarray:
    """Evenly spaced row indices, first and last included, at most `n_frames` of them."""
    if n_rows <= n_frames:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, n_frames).round().astype(int))


def _writer(suffix: str, fps: int):
    if suffix == ".gif":
        return animation.PillowWriter(fps=fps)
    import imageio_ffmpeg

    matplotlib.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    # yuv420p plays everywhere; it needs even frame sizes, which the scale filter guarantees
    return animation.FFMpegWriter(
        fps=fps,
        codec="libx264",
        extra_args=["-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"],
    )


def animate(
    obj,
    path=None,
    fps: int = 20,
    seconds: float = 5.0,
    dpi: int = 90,
    progress: bool | None = None,
):
    """An animation of a Trajectory, a Race or a fitted Learner: shown in a notebook, or
    written to ``.gif`` or ``.mp4``.

    Args:
        obj: a 1-D or 2-D Trajectory (one point or a grid), a Race, or a Learner whose
            parameters were recorded (its predictions improving step by step).
        path: output file, its extension picking the format; None returns an `Animation`
            to show in Jupyter (or to `save` later).
        fps, seconds: frame rate and the longest the animation may last; runs with fewer
            recorded steps than ``fps * seconds`` show every step.
    Returns:
        With `path`, the path written and the number of frames, as ``(Path, int)``; without,
        an `Animation`.

    >>> import descentlab as dl
    >>> run = dl.descend("himmelblau", (-0.4, -0.65), lr=0.01, steps=40)
    >>> dl.animate(run, fps=10, seconds=2).frames
    20
    """
    if path is not None:
        check_output(path, FORMATS, "animation")
    if not (isinstance(fps, int) and fps > 0 and seconds > 0):
        raise DescentError(
            f"fps must be a positive integer and seconds > 0, got {fps!r}, {seconds!r}"
        )
    n_frames = max(2, round(fps * seconds))
    from ..training import Learner

    if isinstance(obj, Learner):
        scene = _learner_scene(obj, n_frames)
    else:
        entries = as_runs(obj)
        dim = entries[0][1].dim
        if dim == 1:
            scene = _curve_scene(entries, n_frames)
        elif dim == 2:
            scene = _plane_scene(obj, entries, n_frames)
        else:
            raise DescentError(f"animate draws 1-D and 2-D runs; this one is {dim}-D")
    made = Animation(*scene, fps=fps, dpi=dpi)
    if path is None:
        return made
    return made.save(path, progress=progress), made.frames


class Animation:
    """Frames of a descent, drawn on demand: in Jupyter it shows as a player (matplotlib's
    JavaScript one, frames embedded as PNG); `save` writes a GIF or an MP4."""

    def __init__(self, fig, update, rows, fps: int, dpi: int):
        self.figure, self._update, self._rows = fig, update, [int(r) for r in rows]
        self.fps, self.dpi = fps, dpi

    @property
    def frames(self) -> int:
        return len(self._rows)

    def save(self, path, progress: bool | None = None) -> Path:
        """Write the animation to ``.gif`` or ``.mp4`` (atomically); returns the path."""
        p = check_output(path, FORMATS, "animation")
        writer = _writer(p.suffix.lower(), self.fps)
        with (
            atomic_file(p) as tmp,
            writer.saving(self.figure, tmp, self.dpi),
            Progress(progress, self.frames) as bar,
        ):
            for i, row in enumerate(self._rows):
                self._update(row)
                writer.grab_frame()
                bar.update(i + 1)
        return p

    def to_html(self) -> str:
        """The player as HTML (what a notebook shows)."""
        player = animation.FuncAnimation(
            self.figure, self._update, frames=self._rows, interval=1000 / self.fps
        )
        self.figure.set_dpi(min(self.dpi, 80))  # embedded frames: keep the notebook light
        return player.to_jshtml(fps=self.fps, default_mode="once")

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"<Animation: {self.frames} frames at {self.fps} fps>"


def _plane_scene(obj, entries, n_frames):
    fig = contour(obj, walks=False)
    ax = fig.axes[0]
    # the timeline runs to the longest walk; one that stopped early keeps its last place
    longest = max((run for _, run in entries), key=lambda run: len(run.recorded))
    rows = frame_rows(len(longest.recorded), n_frames)
    actors = []
    for i, (label, run) in enumerate(entries):
        color = PALETTE[i % len(PALETTE)] if len(entries) > 1 else SINGLE
        one = run.n_points == 1
        n_trails = run.n_points if run.n_points <= MAX_PATHS else 0
        width, alpha = (1.4, 1.0) if one else (0.6, 0.5)
        trails = [ax.plot([], [], color=color, lw=width, alpha=alpha)[0] for _ in range(n_trails)]
        dots = ax.scatter(
            run.path[0, :, 0],
            run.path[0, :, 1],
            s=36 if one else 7,
            color=color,
            edgecolors="black",
            linewidths=0.4,
            zorder=9,
            label=label if len(entries) > 1 else None,
        )
        gone = ax.scatter([], [], marker="x", s=30, c="red", zorder=10)
        actors.append((run, trails, dots, gone))
    if len(entries) > 1:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    box = {"facecolor": "black", "alpha": 0.5, "pad": 3}
    stamp = ax.text(0.02, 0.02, "", transform=ax.transAxes, color="white", fontsize=10, bbox=box)

    def update(row):
        for run, trails, dots, gone in actors:
            r = min(row, len(run.recorded) - 1)
            out = (run.status_ == DIVERGED) & (run.steps_ <= run.recorded[r])
            dots.set_offsets(
                run.path[r][~out]
            )  # diverged points leave; a red cross marks their start
            gone.set_offsets(run.start_[out])
            # one walk keeps its whole trail; a batch shows short tails, as a grid is read
            # by where its points flow, and a diverged point's trail ends when it leaves
            tail = 0 if run.n_points == 1 else max(0, r - TAIL)
            for j, line in enumerate(trails):
                end = r + 1 if not out[j] else 0
                line.set_data(run.path[tail:end, j, 0], run.path[tail:end, j, 1])
        stamp.set_text(f"step {int(longest.recorded[row])}")

    return fig, update, rows


def _curve_scene(entries, n_frames):
    run = entries[0][1]
    fig = curve(run, walks=False)
    ax = fig.axes[0]
    rows = frame_rows(len(run.recorded), n_frames)
    trail = ax.plot([], [], "o-", color=SINGLE, ms=4, lw=0.8, alpha=0.7)[0]
    dot = ax.scatter(
        run.path[0, :, 0], run.values[0], s=70, color=SINGLE, edgecolors="black", zorder=9
    )

    def update(row):
        trail.set_data(run.path[: row + 1, 0, 0], run.values[: row + 1, 0])
        dot.set_offsets(np.column_stack([run.path[row, :, 0], run.values[row]]))
        x, v = float(run.path[row, 0, 0]), float(run.values[row, 0])
        ax.set_title(f"step {int(run.recorded[row])}: f({x:.3g}) = {v:.3g}")

    return fig, update, rows


def _learner_scene(learn, n_frames):
    saved = learn.history["params"]
    if len(saved) < 2:
        raise DescentError(
            "animate needs a fitted Learner with recorded parameters (record_params=True)"
        )
    x = learn.x
    if x.ndim > 1 and x.shape[1] != 1:
        raise DescentError(
            "animate draws a Learner's predictions for 1-D inputs (like the example's time)"
        )
    xs = x.reshape(-1).numpy()
    order = np.argsort(xs)
    preds = np.stack([learn.preds_at(k).reshape(-1).numpy() for k in range(len(saved))])
    rows = frame_rows(len(saved), n_frames)
    fig, ax = new_figure(figsize=(6.4, 4.2))
    ax.scatter(xs, learn.y.numpy(), color="#3b4cc0", s=18, label="data")
    line = ax.plot([], [], "o-", color=SINGLE, ms=4, label="prediction")[0]
    lo = min(float(learn.y.min()), float(np.percentile(preds, 2)))
    hi = max(float(learn.y.max()), float(np.percentile(preds, 98)))
    ax.set(ylim=(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)), xlabel="x", ylabel="y")
    ax.legend(loc="upper right", fontsize=8)
    losses = [np.nan, *learn.history["loss"]]

    def update(row):
        line.set_data(xs[order], preds[row][order])
        loss_text = "" if row == 0 else f", loss {losses[row]:.4g}"
        ax.set_title(f"after {row} step{'s' * (row != 1)}{loss_text}")

    return fig, update, rows
