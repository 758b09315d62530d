"""3-D views with PyVista (the ``[3d]`` extra), rendered off-screen: a PNG, or an MP4 with a slow
orbit. The surface carries contour lines; walks are tubes (or points for big grids).

With no X server, VTK's wheels render through EGL; `VTK_DEFAULT_OPENGL_WINDOW` is set to the
EGL window when `DISPLAY` is unset, so VTK does not first try (and warn about) X.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DescentError
from ..files import atomic_file
from ..progress import Progress
from ..status import DIVERGED
from ._common import PALETTE, as_runs, check_output, objective_of, view_box

MAX_TUBES = 150


def has_pyvista() -> bool:
    return importlib.util.find_spec("pyvista") is not None


def _pyvista():
    if not has_pyvista():
        raise DescentError(
            "3-D views need PyVista: pip install 'descentlab[3d]' (or use dl.plot.surface, "
            "the matplotlib view)"
        )
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import pyvista

    return pyvista


def surface3d(
    obj,
    path,
    seconds: float = 6.0,
    fps: int = 20,
    window=(900, 700),
    tubes: bool = True,
    progress: bool | None = None,
) -> Path:
    """Write a 3-D picture (``.png``) or orbit movie (``.mp4``) of a 2-D run or race.

    Heights are scaled so the surface's relief is about half its width, whatever the function's
    range; values above the 97th percentile are flattened so one spike cannot squash the rest.
    """
    p = check_output(path, {".png", ".jpg", ".jpeg", ".mp4"}, "3-D view")
    entries = as_runs(obj)
    if entries[0][1].dim != 2:
        raise DescentError(f"3-D views need a 2-D run; this one is {entries[0][1].dim}-D")
    objective = objective_of(entries, "3-D views")
    pv = _pyvista()
    box = view_box(objective, [r for _, r in entries])
    n = 160
    xs, ys, z = objective.surface(box, n)
    gx, gy = np.meshgrid(xs, ys)
    lo, top = float(np.nanmin(z)), float(np.nanpercentile(z, 97))
    width = max(box[0][1] - box[0][0], box[1][1] - box[1][0])
    scale = 0.5 * width / max(top - lo, 1e-12)

    def height(v):
        return (np.minimum(v, top) - lo) * scale

    mesh = pv.StructuredGrid(gx, gy, height(z))
    mesh["f"] = np.minimum(z, top).ravel(order="F")
    plotter = pv.Plotter(off_screen=True, window_size=list(window))
    plotter.set_background("white")
    plotter.add_mesh(
        mesh, scalars="f", cmap="viridis", opacity=0.9, show_scalar_bar=False, smooth_shading=True
    )
    plotter.add_mesh(
        mesh.contour(isosurfaces=15, scalars="f"), color="white", line_width=1, opacity=0.6
    )
    lift = 0.004 * width  # paths float just above the surface
    for i, (label, run) in enumerate(entries):
        color = PALETTE[i % len(PALETTE)] if len(entries) > 1 else "#ff5a36"
        keep = np.flatnonzero(run.status_ != DIVERGED)
        if run.n_points <= MAX_TUBES:
            for j in keep:
                pts = np.column_stack(
                    [run.path[:, j, 0], run.path[:, j, 1], height(run.values[:, j]) + lift]
                )
                line = pv.lines_from_points(pts.astype(float))
                plotter.add_mesh(
                    line.tube(radius=(0.006 if run.n_points == 1 else 0.003) * width)
                    if tubes
                    else line,
                    color=color,
                    line_width=3,
                    label=label if j == keep[0] and len(entries) > 1 else None,
                )
        final = np.column_stack([run.x_[keep, 0], run.x_[keep, 1], height(run.value_[keep]) + lift])
        if len(final):
            plotter.add_points(
                final.astype(float),
                color=color,
                point_size=10 if run.n_points == 1 else 5,
                render_points_as_spheres=True,
            )
    minima = [
        m
        for m in objective.minima
        if box[0][0] <= m[0] <= box[0][1] and box[1][0] <= m[1] <= box[1][1]
    ]
    if minima:
        m = np.array(minima, dtype=float)
        with torch.no_grad():
            fm = objective.fn(torch.tensor(m)).numpy()
        plotter.add_points(
            np.column_stack([m, height(fm) + 2 * lift]),
            color="gold",
            point_size=16,
            render_points_as_spheres=True,
        )
    if len(entries) > 1:
        plotter.add_legend(bcolor="white", size=(0.18, 0.18))
    first = entries[0][1]
    plotter.add_text(f"{first.meta['function']}", font_size=11, color="black")
    plotter.camera_position = "iso"
    plotter.camera.elevation = -10
    plotter.camera.zoom(1.1)
    try:
        with atomic_file(p) as tmp:
            if p.suffix.lower() == ".mp4":
                _orbit(plotter, tmp, seconds, fps, progress)
            else:
                plotter.screenshot(tmp)
    finally:
        plotter.close()
    return p


def _orbit(plotter, target: str, seconds: float, fps: int, progress) -> None:
    """One slow turn around the surface, written with the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg

    frames = max(2, round(seconds * fps))
    first = plotter.screenshot(return_img=True)
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        target,
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        with Progress(progress, frames) as bar:
            for k in range(frames):
                if k:
                    plotter.camera.azimuth = plotter.camera.azimuth + 360 / frames
                img = plotter.screenshot(return_img=True)
                writer.send(np.ascontiguousarray(img[:h, :w, :3]))
                bar.update(k + 1)
    finally:
        writer.close()
