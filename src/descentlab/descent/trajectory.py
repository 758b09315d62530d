"""`Trajectory`: what a descent did, point by point, and how to print, tabulate, save and load it.

Arrays are NumPy on the CPU, in the run's dtype. Recorded rows are iterations
``recorded[r]``; ``path[r]`` holds every point's position there. A point that converged or
diverged keeps its position in later rows. A run started from one point drops the batch axis
in `start`, `x`, `value`, `steps` and `status` (and `x` is a scalar for a 1-D function).
"""

from __future__ import annotations

import functools
import io
import json
import os
import stat
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LoadError
from ..files import atomic_file
from ..status import CONVERGED, DIVERGED, DIVERGING_GROWTH, OUTCOMES, RUNNING, STATUS

FORMAT = "descentlab.trajectory/1"
_CHUNK = 1 << 20  # points at a time where a per-point answer needs temporaries
_FIELD = {"values": "_values", "grad_norms": "_grad_norms"}  # saved name -> Trajectory field
_ARRAYS = (
    "path",
    "values",
    "grad_norms",
    "recorded",
    "start_",
    "x_",
    "value_",
    "grad_norm_",
    "steps_",
    "status_",
)


def coordinate_names(d: int) -> list[str]:
    return ["x", "y", "z"][:d] if d <= 3 else [f"x{i}" for i in range(1, d + 1)]


class Summary(dict):
    """`Trajectory.summary`'s dict, printed in a REPL as one line a key."""

    def __repr__(self) -> str:
        width = max(map(len, self), default=0)
        return "\n".join(f"{k:<{width}}  {_shown(v)}" for k, v in self.items())

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython
        printer.text(repr(self))


def _shown(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, list) and v and isinstance(v[0], dict):  # the minima
        return "; ".join(
            f"[{m['index']}] ({', '.join(f'{c:.4g}' for c in m['point'])}): {m['count']:,}"
            for m in v
        )
    if isinstance(v, list):
        return "(" + ", ".join(_shown(c) if isinstance(c, float) else str(c) for c in v) + ")"
    return str(v)


@dataclass(eq=False)
class Trajectory:
    """The record of a batch of descents.

    Attributes:
        path: ``(R, N, d)`` positions at the recorded iterations. With ``record="final"`` its
            one row is the final state itself (the same memory as ``x_``, ``value_`` and
            ``grad_norm_``, not a copy): copy before writing into either.
        values: ``(R, N)`` f at those positions.
        grad_norms: ``(R, N)`` gradient norms there (the run's norm). Where the C loop
            recorded (positions only), these two are computed from `path` when first read,
            by the loop's own code: the bits it would have stored (so read them before
            writing into `path`).
        recorded: ``(R,)`` iteration index of each recorded row.
        meta: the settings of the run (objective, optimizer, lr, tol, ...), JSON-ready.
    """

    path: np.ndarray
    _values: np.ndarray | None = field(repr=False)
    _grad_norms: np.ndarray | None = field(repr=False)
    recorded: np.ndarray
    start_: np.ndarray  # (N, d)
    x_: np.ndarray  # (N, d) final positions
    value_: np.ndarray  # (N,)
    grad_norm_: np.ndarray  # (N,)
    steps_: np.ndarray  # (N,) steps taken before stopping
    status_: np.ndarray  # (N,) codes into STATUS
    meta: dict[str, Any] = field(default_factory=dict)
    objective: Any = field(default=None, repr=False)  # the live Objective, not saved
    # fill(path, "values" | "norms"): where the run recorded positions only (`Recorder.defer`)
    _fill: Callable[[np.ndarray, str], np.ndarray] | None = field(default=None, repr=False)

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._values = self._fill(self.path, "values")
        return self._values

    @property
    def grad_norms(self) -> np.ndarray:
        if self._grad_norms is None:
            self._grad_norms = self._fill(self.path, "norms")
        return self._grad_norms

    def __getstate__(self) -> dict:
        """Pickled with its values and norms (the filling kernel stays in this process)."""
        state = dict(self.__dict__)
        state.update(_values=self.values, _grad_norms=self.grad_norms, _fill=None)
        return state

    # ---- shape of the batch ---------------------------------------------------------------
    @property
    def single(self) -> bool:
        return bool(self.meta.get("single", False))

    @property
    def n_points(self) -> int:
        return self.x_.shape[0]

    @property
    def dim(self) -> int:
        return self.x_.shape[1]

    @property
    def iterations(self) -> int:
        """The last iteration evaluated (the most steps any point took)."""
        return int(self.recorded[-1]) if len(self.recorded) else 0

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.meta.get("grid_shape", ()))

    def _one(self, a: np.ndarray, point_axis_only: bool = False):
        if not self.single:
            return a
        a = a[0]
        if not point_axis_only and self.dim == 1 and a.ndim == 1:
            return a[0]
        return a

    # ---- per point results ------------------------------------------------------------------
    @property
    def start(self):
        return self._one(self.start_)

    @property
    def x(self):
        """Final positions ``(N, d)``; ``(d,)`` for one point, a scalar for one 1-D point."""
        return self._one(self.x_)

    @property
    def value(self):
        return self._one(self.value_)

    @property
    def grad_norm(self):
        return self._one(self.grad_norm_)

    @property
    def steps(self):
        """Steps taken by each point before it converged, diverged, or the run ended."""
        s = self.steps_
        return int(s[0]) if self.single else s

    @property
    def status(self):
        """How each walk ended, in the one vocabulary of `descentlab.status`: "converged",
        "step limit", "diverging", "diverged" or "interrupted"."""
        names = np.array(STATUS, dtype=object)[self.status_]
        names[np.atleast_1d(self.diverging)] = "diverging"
        names = names.astype(str)
        return str(names[0]) if self.single else names

    @property
    def converged(self):
        c = self.status_ == CONVERGED
        return bool(c[0]) if self.single else c

    @property
    def diverged(self):
        c = self.status_ == DIVERGED
        return bool(c[0]) if self.single else c

    @property
    def evaluations(self):
        """Every evaluation of f a closure optimizer asked for (L-BFGS: each step's first,
        then its line search's trial points), as a DataFrame: step (the step it belongs to),
        point, the coordinates, value. Empty for other optimizers."""
        import pandas as pd

        names = ["step", "point", *coordinate_names(self.dim), "value"]
        frame = pd.DataFrame(self.meta.get("evaluations") or [], columns=names)
        return frame.astype({"step": "int64", "point": "int64"})

    @property
    def rates(self) -> np.ndarray:
        """The learning rate of each step taken, ``(iterations,)``: the schedule's where one
        was given, else the constant rate."""
        if "rates" in self.meta:
            return np.asarray(self.meta["rates"], dtype=np.float64)
        return np.full(self.iterations, float(self.meta.get("lr") or np.nan))

    @functools.cached_property  # (a final-state recording evaluates f at every start)
    def growth_(self) -> np.ndarray:
        """``(N,)``: how many times farther from f* (0 where f* is unknown) each point's final
        value is than its first, |f_T - f*| / max(|f_0 - f*|, 1e-3); NaN where the first value
        is not known (a recording of the final state alone, with no live objective)."""
        base = self.meta.get("minimum_value") or 0.0
        first = self._first_values()
        if first is None:
            return np.full(self.n_points, np.nan)
        with np.errstate(invalid="ignore", over="ignore"):
            far = np.abs(self.value_.astype(np.float64) - base)
            return far / np.maximum(np.abs(first.astype(np.float64) - base), 1e-3)

    def _first_values(self) -> np.ndarray | None:
        if len(self.recorded) and self.recorded[0] == 0:
            return np.asarray(self.values[0])
        if self.objective is not None:
            import torch

            with torch.no_grad():
                x = torch.as_tensor(self.start_, dtype=torch.float64)
                return self.objective(x).numpy()
        return None

    @property
    def diverging(self):
        """Points still running whose distance to f* grew a thousandfold or more
        (`growth_`): a learning rate too high, caught before the blow-up bound marks them
        diverged. d2l's gd at lr 0.6 on 0.1x² + 2y² from (-5, -2) is one after 20 steps."""
        d = (self.status_ == RUNNING) & (np.nan_to_num(self.growth_, nan=0.0) >= DIVERGING_GROWTH)
        return bool(d[0]) if self.single else d

    @property
    def minima(self) -> list[tuple[float, ...]]:
        return [tuple(m) for m in self.meta.get("minima", [])]

    def reached(self, tol: float = 1e-2):
        """Index of the known global minimum each final point lies within `tol` of, else -1.

        Distances are Euclidean; diverged points never count as having reached one.
        """
        out = np.full(self.n_points, -1, dtype=np.int64)
        minima = np.asarray(self.minima, dtype=np.float64)
        # in chunks of coordinate rows, one minimum at a time: an (N, M, d) array of
        # differences took 4 GB for an 8,000 x 8,000 grid on Himmelblau
        for lo in range(0, self.n_points if self.minima else 0, _CHUNK):
            cols = self.x_[lo : lo + _CHUNK].T.astype(np.float64)  # (d, chunk)
            best = np.full(cols.shape[1], np.inf)  # squared distance to the nearest so far
            index = out[lo : lo + _CHUNK]
            square = np.empty_like(best)
            for i, m in enumerate(minima):
                square.fill(0.0)
                for c, mc in enumerate(m):
                    diff = cols[c] - mc
                    square += diff * diff
                closer = square < best  # the first of equally near minima, as argmin
                np.copyto(best, square, where=closer)
                np.copyto(index, i, where=closer)
            far = ~(np.sqrt(best) <= tol) | (self.status_[lo : lo + _CHUNK] == DIVERGED)
            np.copyto(index, -1, where=far)
        return int(out[0]) if self.single else out

    def outcomes(self) -> dict[str, int]:
        """How many walks ended in each outcome (`descentlab.status.OUTCOMES`, in that
        order); they add up to the points."""
        counts = np.bincount(self.status_, minlength=len(STATUS))
        diverging = int(np.atleast_1d(self.diverging).sum())
        by_name = dict(zip(STATUS, (int(c) for c in counts), strict=True))
        by_name["step limit"] -= diverging
        by_name["diverging"] = diverging
        return {name: by_name[name] for name in OUTCOMES}

    def summary(self, tol: float = 1e-2) -> Summary:
        """The walks' outcomes (converged, step_limit, diverging, diverged, interrupted: they
        add up to the points), how many reached each known minimum (within `tol`), and the
        best final point. A dict, which a REPL prints as a short table."""
        finite = np.where(np.isfinite(self.value_), self.value_, np.inf)
        best = int(finite.argmin())
        out = Summary(
            function=self.meta.get("function"),
            optimizer=self.meta.get("optimizer"),
            points=self.n_points,
            iterations=self.iterations,
            tol=self.meta.get("tol"),
            **{name.replace(" ", "_"): c for name, c in self.outcomes().items()},
            best_x=self.x_[best].tolist(),
            best_value=float(self.value_[best]),
        )
        diverging = np.atleast_1d(self.diverging)
        if out["diverging"]:
            out["largest_growth"] = float(np.nanmax(self.growth_[diverging]))
        if self.minima:
            # counts[0]: no minimum; counts[1 + i]: minimum i
            counts = np.bincount(
                np.atleast_1d(self.reached(tol)) + 1, minlength=1 + len(self.minima)
            )
            out["minima"] = [
                {"index": i, "point": list(m), "count": int(c)}
                for i, (m, c) in enumerate(zip(self.minima, counts[1:], strict=True))
            ]
            out["no_minimum"] = int(counts[0])
        return out

    # ---- printing and tables --------------------------------------------------------------------
    def trace_lines(self, point: int = 0, final: bool = False) -> list[str]:
        """Example 000's lines ``f(x) = y`` (``:.2`` formatting) for each point a step was taken
        from; with `final`, the last position too."""
        stop = int(self.steps_[point])
        rows = [r for r, k in enumerate(self.recorded) if k < stop or (final and k == stop)]
        lines = []
        for r in rows:
            coords = ", ".join(f"{float(c):.2}" for c in self.path[r, point])
            lines.append(f"f({coords}) = {float(self.values[r, point]):.2}")
        return lines

    def print_trace(self, point: int = 0, final: bool = False, file=None) -> None:
        """Print `trace_lines`, e.g. ``f(-3.0) = 1.5e+01`` … for example 000."""
        print("\n".join(self.trace_lines(point, final)), file=file or sys.stdout)

    def to_frame(self, final: bool = False):
        """A pandas DataFrame: one row per (recorded step, point), or per point with `final`."""
        import pandas as pd

        names = coordinate_names(self.dim)
        if final:
            data = {"point": np.arange(self.n_points)}
            data.update({f"start_{n}": self.start_[:, i] for i, n in enumerate(names)})
            data.update({n: self.x_[:, i] for i, n in enumerate(names)})
            data.update(
                value=self.value_,
                grad_norm=self.grad_norm_,
                steps=self.steps_,
                status=pd.Categorical(np.array(STATUS)[self.status_], categories=STATUS),
                minimum=np.atleast_1d(self.reached()),
            )
            return pd.DataFrame(data)
        r, n = self.values.shape
        data = {"step": np.repeat(self.recorded, n), "point": np.tile(np.arange(n), r)}
        data.update({c: self.path[:, :, i].reshape(-1) for i, c in enumerate(names)})
        data.update(value=self.values.reshape(-1), grad_norm=self.grad_norms.reshape(-1))
        return pd.DataFrame(data)

    def status_text(self, grouping: str = "") -> str:
        """The walks per outcome: "3 converged, 1 step limit, 1 diverging (f grew a
        thousandfold or more)"; `grouping` "," writes 1,000."""
        counts = self.outcomes()
        text = ", ".join(f"{c:{grouping}} {s}" for s, c in counts.items() if c)
        if counts["diverging"]:
            text += " (f grew a thousandfold or more)"
        return text

    def __repr__(self) -> str:
        what = "1 point" if self.single else f"{self.n_points} points"
        return (
            f"<Trajectory {self.meta.get('function')} · {self.meta.get('optimizer')} "
            f"lr={self.meta.get('lr')} · {what} · {self.iterations} iterations · "
            f"{self.status_text()}>"
        )

    # ---- pictures (the plot package, loaded when asked for) --------------------------------------
    def plot(self, **kwargs):
        """The walk as a picture: on the contour map in 2-D (`plot.contour`), on the curve in
        1-D (`plot.curve`), each parameter against the step beyond (`plot.params`). Returns
        the Figure, which a notebook shows; ``path=`` writes it too."""
        from .. import plot

        draw = {1: plot.curve, 2: plot.contour}.get(self.dim, plot.params)
        return draw(self, **kwargs)

    def animate(self, path=None, **kwargs):
        """The walk moving (`plot.animate`): a player in a notebook, or a GIF / MP4 at `path`."""
        from .. import plot

        return plot.animate(self, path, **kwargs)

    def plot3d(self, **kwargs):
        """The path on the function's 3-D surface (`plot.surface`)."""
        from .. import plot

        return plot.surface(self, **kwargs)

    def _repr_html_(self) -> str:
        from ..plot import display

        return display.trajectory(self)

    # ---- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.npz`` (arrays + JSON metadata) atomically; returns the path written."""
        target = Path(path)
        if target.suffix != ".npz":
            target = target.with_name(target.name + ".npz")
        target.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        arrays["meta"] = np.array(json.dumps({**self.meta, "format": FORMAT}))
        with atomic_file(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        return target


def load(path: str | os.PathLike) -> Trajectory:
    """Read a Trajectory written by `Trajectory.save`, restoring every array exactly.

    The file is checked before its arrays are read: its declared sizes must fit in memory (a
    small file may claim gigabytes), its metadata must be a descentlab trajectory's, and the
    arrays must agree in shape and hold valid statuses.

    Raises:
        LoadError: the file is missing, unreadable, truncated, too large, or not a descentlab
            trajectory; the message says which.
    """
    p = Path(path)
    if not p.exists():
        raise LoadError(f"no such file: {str(p)!r}")
    if p.is_dir():
        raise LoadError(f"{str(p)!r} is a directory, not a trajectory file")
    try:
        kind = p.stat().st_mode
    except OSError as exc:
        raise LoadError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(kind):  # a device (/dev/zero) or a pipe would be read forever
        raise LoadError(f"{str(p)!r} is not a regular file (a device or a pipe); give a .npz file")
    try:
        raw = p.read_bytes()
    except PermissionError:
        raise LoadError(f"cannot read {str(p)!r}: permission denied") from None
    except OSError as exc:
        raise LoadError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
    try:
        _check_sizes(p, raw)
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            if "meta" not in data.files:
                raise LoadError(f"{str(p)!r} is a .npz file but not a descentlab trajectory")
            meta = _json(p, str(data["meta"]))
            if not isinstance(meta, dict):
                raise LoadError(f"{str(p)!r} has metadata that is not a mapping; not a trajectory")
            if meta.get("format") != FORMAT:
                raise LoadError(
                    f"{str(p)!r} has format {meta.get('format')!r}; expected {FORMAT!r}"
                )
            missing = [a for a in _ARRAYS if a not in data.files]
            if missing:
                raise LoadError(f"{str(p)!r} lacks arrays {missing}; the file is incomplete")
            arrays = {_FIELD.get(a, a): data[a] for a in _ARRAYS}
    except LoadError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError, json.JSONDecodeError):
        raise LoadError(
            f"{str(p)!r} is not a readable descentlab trajectory (truncated or not a .npz file)"
        ) from None
    _check_arrays(p, arrays)
    meta.pop("format", None)
    traj = Trajectory(**arrays, meta=meta)
    traj.objective = _objective_from_meta(meta)
    return traj


def _json(p: Path, text: str):
    """The metadata, refused in one line when it nests deeper than Python's parser goes."""
    try:
        return json.loads(text)
    except RecursionError:
        raise LoadError(
            f"{str(p)!r} has metadata nested thousands deep; a trajectory's is a few levels"
        ) from None


def _check_headers(p: Path, archive: zipfile.ZipFile) -> None:
    """Each array's header must describe no more data than its member holds (a header may
    claim terabytes that numpy would try to allocate)."""
    for m in archive.infolist():
        if not m.filename.endswith(".npy"):
            continue
        with archive.open(m) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(fh)
            except (ValueError, SyntaxError, EOFError, OSError):
                raise LoadError(f"{str(p)!r}: {m.filename!r} is not a readable array") from None
        count = 1
        for size in shape:
            count *= int(size)
        if dtype.hasobject or count * dtype.itemsize > m.file_size:
            raise LoadError(
                f"{str(p)!r}: {m.filename!r} claims {count:,} values of {dtype} in "
                f"{m.file_size:,} bytes; the file is damaged or not a trajectory"
            )


def _check_sizes(p: Path, raw: bytes) -> None:
    """Refuse, before anything is decompressed, a file whose arrays would not fit in memory
    or that expands far beyond its size (descentlab stores its arrays uncompressed), and one
    whose array headers claim more than their members hold."""
    from ..memory import _gb, memory_budget

    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = archive.infolist()
    declared = sum(m.file_size for m in members)
    if declared > memory_budget():
        raise LoadError(
            f"{str(p)!r} declares {_gb(declared)} of arrays, more than the "
            f"{_gb(memory_budget())} this process may use"
        )
    for m in members:  # a small file that claims gigabytes (a zip bomb)
        if m.file_size > 64 * 2**20 and m.file_size > 20 * m.compress_size:
            raise LoadError(
                f"{str(p)!r} holds {m.filename!r}, which expands {m.file_size / 2**20:.0f} MiB "
                f"from {m.compress_size / 2**20:.2f} MiB; not a descentlab trajectory"
            )
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        _check_headers(p, archive)


def _check_arrays(p: Path, arrays: dict) -> None:
    """The arrays describe one run: R recorded rows of N points in d coordinates."""
    path = arrays["path"]
    if path.ndim != 3:
        raise LoadError(f"{str(p)!r}: path has shape {path.shape}; expected (rows, points, d)")
    rows, n, d = path.shape
    want = {
        "_values": (rows, n),
        "_grad_norms": (rows, n),
        "recorded": (rows,),
        "start_": (n, d),
        "x_": (n, d),
        "value_": (n,),
        "grad_norm_": (n,),
        "steps_": (n,),
        "status_": (n,),
    }
    for name, shape in want.items():
        if arrays[name].shape != shape:
            shown = name.strip("_")
            raise LoadError(
                f"{str(p)!r}: {shown} has shape {arrays[name].shape}, but path {path.shape} "
                f"needs {shape}; the file is damaged"
            )
    status = arrays["status_"]
    if status.size and (status.min() < 0 or status.max() >= len(STATUS)):
        raise LoadError(
            f"{str(p)!r}: status codes must be 0-{len(STATUS) - 1} ({', '.join(STATUS)}), "
            f"found {int(status.min())}..{int(status.max())}; the file is damaged"
        )
    if arrays["steps_"].size and arrays["steps_"].min() < 0:
        raise LoadError(f"{str(p)!r}: negative step counts; the file is damaged")


def _objective_from_meta(meta: dict):
    """Rebuild a registered or formula objective so plots work after loading; None otherwise."""
    from ..problem.resolve import named_or_formula

    source = meta.get("source")
    if source not in ("registry", "formula"):
        return None
    try:
        return named_or_formula(meta["function"], meta.get("dim") if source == "registry" else None)
    except Exception:
        return None
