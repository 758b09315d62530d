"""What the plotting modules share: the figure type, colours, run lists, the view box, atomic
saving."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.figure
import numpy as np

from .. import defaults
from ..descent.race import Race
from ..descent.trajectory import Trajectory
from ..errors import DescentError
from ..files import atomic_file, check_target
from ..progress import in_a_notebook
from ..status import DIVERGED

PALETTE = list(defaults.PALETTE)
SINGLE = defaults.SINGLE


def colour(i: int, entries: int) -> str:
    """Entrant i's colour among `entries` (one walk alone: `SINGLE`)."""
    return PALETTE[i % len(PALETTE)] if entries > 1 else SINGLE


FIGURE_FORMATS = {".png", ".svg", ".pdf", ".jpg", ".jpeg"}
DPI = 110


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that pyplot does not hold: no window opens, none needs closing, and
    the user's backend and their own `plt` figures are left alone. In Jupyter (JupyterLab,
    Notebook 7, VS Code) it shows as a picture when it is a cell's result; ``display(fig)``
    shows it anywhere in a cell. In a script or a terminal, ``fig.save("walk.png")`` writes
    it and ``fig.show()`` opens it in a window (where matplotlib has a window backend)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)

    def save(self, path, dpi: int = DPI) -> Path:
        """Write the picture (.png, .svg, .pdf, .jpg), atomically; returns the path."""
        return save_figure(self, path, dpi=dpi)

    def show(self, warn: bool = True) -> None:
        """Show the picture: in a notebook, in the cell; elsewhere in a window of pyplot's
        backend, until it is closed. With no window backend (a server, no display), says how
        to save it instead."""
        if in_a_notebook():
            from IPython.display import display

            display(self)
            return
        import matplotlib.pyplot as plt

        if plt.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
            print(
                f"no window to show the picture in (matplotlib's backend is "
                f"{plt.get_backend()}): save it with fig.save('picture.png')"
            )
            return
        manager = plt.figure().canvas.manager  # a pyplot window, given this figure
        manager.canvas.figure = self
        self.set_canvas(manager.canvas)
        plt.show()


def png_bytes(fig, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize, **subplots):
    """A `Figure` and its axes, as `pyplot.subplots` gives them."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def as_runs(runs) -> list[tuple[str, Trajectory]]:
    """(label, Trajectory) pairs from a Trajectory, a Race, or a sequence of Trajectories."""
    if isinstance(runs, Trajectory):
        return [(runs.meta.get("optimizer", "run"), runs)]
    if isinstance(runs, Race):
        if not len(runs):
            raise DescentError("the race is empty; give it at least one optimizer")
        return list(runs)
    if isinstance(runs, (list, tuple)) and runs and all(isinstance(r, Trajectory) for r in runs):
        return [(r.meta.get("optimizer", f"run {i}"), r) for i, r in enumerate(runs)]
    raise DescentError(f"expected a Trajectory or a Race, got {type(runs).__name__}")


def objective_of(runs, what: str):
    """The function behind (label, Trajectory) pairs, or a clear error when a loaded run of a
    Python callable cannot supply it."""
    obj = runs[0][1].objective
    if obj is None:
        raise DescentError(
            f"{what} needs the function itself, which a loaded run of a Python callable lacks; "
            "re-run it, or use a registered name or a formula"
        )
    return obj


def view_box(objective, runs, margin: float = 0.12):
    """The region to draw: every recorded position with a margin, at least a tenth of the
    function's view (or domain), and inside it when the paths stay in it."""
    # diverged points would stretch the view to their blow-up: use only their starts
    parts = [r.path[:, r.status_ != DIVERGED].reshape(-1, r.dim) for r in runs]
    parts += [r.start_ for r in runs]
    pts = np.concatenate(parts).astype(np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    region = objective.view or objective.domain
    domain = np.array(region) if region else None
    span = hi - lo
    floor = 0.1 * (domain[:, 1] - domain[:, 0]) if domain is not None else np.ones_like(span)
    span = np.maximum(span, floor)
    center = (lo + hi) / 2
    lo, hi = center - span * (0.5 + margin), center + span * (0.5 + margin)
    if domain is not None:
        inside = (pts.min(axis=0) >= domain[:, 0]) & (pts.max(axis=0) <= domain[:, 1])
        lo = np.where(inside, np.maximum(lo, domain[:, 0]), lo)
        hi = np.where(inside, np.minimum(hi, domain[:, 1]), hi)
    return tuple((float(a), float(b)) for a, b in zip(lo, hi, strict=True))


def check_output(path, allowed: set[str], what: str) -> Path:
    """The output path, after checking its extension and that its folder exists."""
    p = Path(path)
    if p.suffix.lower() not in allowed:
        raise DescentError(
            f"cannot write a {what} as {p.suffix or 'a file without extension'!r}; use one of "
            f"{', '.join(sorted(allowed))}"
        )
    if not p.parent.is_dir():
        raise DescentError(f"folder {str(p.parent)!r} does not exist; create it first")
    return check_target(p, what)


def save_figure(fig, path, dpi: int = DPI) -> Path:
    p = check_output(path, FIGURE_FORMATS, "figure")
    with atomic_file(p) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return p
