"""Training seen as a descent: a network's loss on a plane (or a line) through its weights.

A network has P weights; its loss is a function of P variables. Restricted to the plane
``center + α·d₁ + β·d₂`` it is a function of two, which every picture, descent and explorer of
descentlab takes. `landscape` chooses the plane:

* ``"pca"``: the two leading principal directions of the weights kept along the training
  (`Learner.fit(keep_weights=k)`), around the final weights — Li et al. 2018, "Visualizing the
  Loss Landscape of Neural Nets", section 7. The share of the path's variance each direction
  explains is kept, and shown on every picture.
* ``"random"``: two random directions, filter-normalized (their section 4): each filter (a
  row of a linear layer, an output channel of a convolution) of a direction is scaled to the
  norm of the same filter in the weights; biases and normalization layers get no direction
  unless ``include_biases=True``.
* ``"interpolate"``: the line from the initial to the final weights (Goodfellow, Vinyals and
  Saxe 2015), with the training and validation loss along it.
* given directions: one or two flat tensors or state dicts.

A plane is a slice, not the whole space: the kept weights seldom lie in it. Each one is
projected onto the plane and keeps its honest residual, its true loss beside the plane's loss
at its projection, and its distance from the plane.

>>> import descentlab as dl
>>> t, speed = dl.datasets.noisy_quadratic(seed=0)
>>> learn = dl.Learner(lambda t, p: p[0]*t**2 + p[1]*t + p[2], params=3, data=(t, speed),
...                    lr=1e-5, verbose=False)
>>> _ = learn.fit(10, keep_weights=1)
>>> plane = learn.landscape("pca", resolution=11)
>>> plane.loss.shape, round(sum(plane.explained), 3) <= 1.0
((11, 11), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DescentError, UnknownNameError
from ..problem.objective import Objective
from .functional import PlaneLoss, Weights, check_grid_memory, data_of
from .plane import (
    as_flat,
    axes,
    check_independent,
    pca,
    points_per_direction,
    random_directions,
)

METHODS = ("pca", "random", "interpolate")
# a plane explaining less of the path than this says so on its pictures
LITTLE = 0.5


@dataclass(frozen=True)
class ProjectedPath:
    """One training's kept weights seen from the plane.

    Attributes:
        label: which training (its optimizer and rate, also in `optimizer` and `lr`).
        steps: the step of each kept row.
        coords: ``(K, k)`` coordinates of each row's projection onto the plane (or line).
        true_loss: the loss at the kept weights themselves.
        plane_loss: the loss at their projection (what the plane shows there).
        distance: each row's distance from the plane, in weight units.
    """

    label: str
    steps: np.ndarray
    coords: np.ndarray
    true_loss: np.ndarray
    plane_loss: np.ndarray
    distance: np.ndarray
    optimizer: str = ""
    lr: float = math.nan

    @property
    def gap(self) -> np.ndarray:
        """How far the plane's loss under each kept point is from its true loss."""
        return np.abs(self.plane_loss - self.true_loss)

    @property
    def relative_gap(self) -> np.ndarray:
        """`gap` as a fraction of the true loss."""
        return self.gap / np.maximum(np.abs(self.true_loss), 1e-300)


@dataclass(frozen=True, eq=False)
class Landscape(Objective):
    """A network's loss on a plane (or line) through its weights: an `Objective` of 2 (or 1)
    variables with the grid it was drawn on and the training's path projected onto it.

    Attributes:
        method: ``pca``, ``random``, ``interpolate`` or ``given``.
        center: the flat weights the plane goes through (coordinates 0, 0).
        directions: the plane's directions, flat tensors of P numbers.
        alphas, betas: the grid's coordinates along each direction (`betas` is None on a line).
        loss: the loss on the grid, ``(len(alphas), len(betas))`` (``(len(alphas),)`` on a line).
        valid_loss: on the line from the initial to the final weights, the validation loss.
        explained: for PCA, the share of the path's variance each direction explains.
        paths: each training's kept weights projected onto the plane, with their residuals.
        data: which data the loss is on (``train``, ``valid`` or ``given``).
    """

    method: str = "given"
    center: torch.Tensor | None = None
    directions: tuple[torch.Tensor, ...] = ()
    alphas: np.ndarray | None = None
    betas: np.ndarray | None = None
    loss: np.ndarray | None = None
    valid_loss: np.ndarray | None = None
    explained: tuple[float, ...] | None = None
    paths: tuple[ProjectedPath, ...] = ()
    data: str = "train"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def path(self) -> np.ndarray | None:
        """The first training's projected path ``(K, k)``, or None when none was kept."""
        return self.paths[0].coords if self.paths else None

    @property
    def start(self) -> tuple[float, ...] | None:
        """Where the first training's path begins on the plane (its initial weights)."""
        return tuple(float(v) for v in self.paths[0].coords[0]) if self.paths else None

    def weights_at(self, point) -> torch.Tensor:
        """The flat weights at coordinates ``(α, β)`` of the plane."""
        c = torch.as_tensor(point, dtype=self.center.dtype).reshape(-1)
        if c.numel() != self.dim:
            raise DescentError(f"a point of this plane has {self.dim} coordinate(s), got {point!r}")
        return self.center + sum(ci * d for ci, d in zip(c, self.directions, strict=True))

    def surface(self, box, n: int = 240):
        """The loss over `box`: the grid it was drawn on when the box lies within it (so
        every picture shows the same numbers), else a fresh grid at its own resolution."""
        (x0, x1), (y0, y1) = box
        a, b = self.alphas, self.betas
        tol = 1e-9 * max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
        if x0 >= a[0] - tol and x1 <= a[-1] + tol and y0 >= b[0] - tol and y1 <= b[-1] + tol:
            return a, b, self.loss.T
        key = (tuple(box), min(n, len(a)))
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = Objective.surface(self, box, min(n, len(a)))
        return self._cache[key]

    @property
    def share(self) -> str:
        """ "explains 85% + 9% of the path" on a PCA plane, else ""."""
        if self.explained is None:
            return ""
        return f"explains {' + '.join(f'{s:.0%}' for s in self.explained)} of the path"

    @property
    def note(self) -> str:
        """What the plane shows, in one line: how much of the path it explains, how far the
        path lies from it."""
        parts = []
        if self.explained is not None:
            shares = " + ".join(f"{s:.0%}" for s in self.explained)
            parts.append(f"the plane explains {shares} = {sum(self.explained):.0%} of the path")
        elif self.method == "random":
            parts.append("random filter-normalized directions")
        if self.paths:
            far = max(float(p.distance.max()) for p in self.paths)
            gap = max(float(p.relative_gap.max()) for p in self.paths)
            where = "line" if self.dim == 1 else "plane"
            parts.append(
                f"the path lies up to {far:.3g} from the {where}, where its loss differs from "
                f"the {where}'s by up to {gap:.1%}"
            )
        if self.explained is not None and sum(self.explained) < LITTLE:
            parts.append("a poor summary of the path")
        return "; ".join(parts)

    def walks(self):
        """The projected paths as a `Race` of walks on this plane (one per training), so every
        picture of descents draws them: their positions are the projections, their values
        the plane's loss there."""
        from ..descent.race import Race

        return Race({p.label or f"training {i}": _walk(self, p) for i, p in enumerate(self.paths)})

    def plot(self, **kwargs):
        """The plane's loss with each path and its residual (`plot.landscape`)."""
        from .. import plot

        return plot.landscape(self, **kwargs)

    def plot3d(self, path=None, **kwargs):
        """The plane as a 3-D surface with the paths on it (`plot.surface3d` where PyVista is
        installed, else `plot.surface`)."""
        from .. import plot

        return plot.landscape3d(self, path, **kwargs)

    def animate(self, path=None, **kwargs):
        """The training walking over the plane, one kept row per frame (`plot.animate`)."""
        from .. import plot

        return plot.landscape_animation(self, path, **kwargs)

    def __repr__(self) -> str:
        shape = "×".join(map(str, np.shape(self.loss)))
        return (
            f"<Landscape {self.method}: {shape} grid of the {self.data} loss, "
            f"{len(self.paths)} path(s); {self.note}>"
        )


def landscape(
    learners,
    directions="pca",
    *,
    span=None,
    resolution: int | None = None,
    data="train",
    center=None,
    seed: int = 0,
    include_biases: bool = False,
    dtype: torch.dtype = torch.float32,
    max_memory: float | None = None,
) -> Landscape:
    """The loss of one training, or of several trainings of the same model, on a plane (or
    line) through the weights.

    Args:
        learners: a fitted `Learner`, or several of the same model (one plane for all: their
            kept paths are drawn side by side, each with its residual).
        directions: ``"pca"``, ``"random"``, ``"interpolate"``, or one or two directions as
            flat tensors of P numbers or state dicts.
        span: the grid's extent in each direction: a half-width ``s`` (``-s..s``), ``(lo, hi)``
            for both, or ``((α_lo, α_hi), (β_lo, β_hi))``. Default: the projected paths with a
            margin (±1 for random directions, -0.5..1.5 on the init-to-final line).
        resolution: grid points per direction (default 25 on a plane, 61 on a line).
        data: ``"train"``, ``"valid"`` or ``(x, y)`` tensors: the loss drawn.
        center: where the plane goes through: ``"final"`` (the weights now; default for one
            training), ``"mean"`` (of all kept weights; default for several), ``"start"``
            (the first kept weights), or flat weights / a state dict.
        seed: seeds the random directions.
        include_biases: give random directions to biases and normalization layers too.
        dtype: the dtype the loss is computed in (float64 for exact comparisons).
        max_memory: bytes the grid may use (default 80 % of what is available).
    """
    learns = list(learners) if isinstance(learners, (list, tuple)) else [learners]
    if not learns:
        raise DescentError("landscape needs at least one fitted Learner")
    first = learns[0]
    layout = _check_learners(learns)
    method = _method(directions)
    model = first.model
    x, y, data_name = data_of(first, data)
    if method == "interpolate":
        if len(learns) > 1:
            raise DescentError(
                "interpolate draws one training's line from its initial to its final weights; "
                "give one Learner (use 'pca' to compare several)"
            )
        begin = _initial_weights(first)
        end = layout.flat(model).to(begin.dtype)
        if torch.equal(begin, end):
            raise DescentError("the initial and final weights are equal: fit before drawing it")
        origin, dirs = begin, [end - begin]
        explained = None
    else:
        kept = [_kept(learn, method) for learn in learns]
        origin = _center(center, learns, kept, layout, method)
        if method == "pca":
            dirs, explained = pca(torch.cat([k for k, _ in kept]).double(), origin.double())
        elif method == "random":
            dirs, explained = random_directions(model, layout, origin, seed, include_biases), None
        else:
            dirs, explained = [as_flat(d, layout, i) for i, d in enumerate(directions)], None
    stack = torch.stack([d.to(dtype) for d in dirs])
    check_independent(stack)
    plane = PlaneLoss(model, first.loss_fn, x, y, origin, stack, dtype)
    paths = [] if method == "interpolate" else _project_all(learns, kept, plane, method)
    if method == "interpolate" and len(first.weights_at):
        paths = _project_all(learns, [(first.weights, first.weights_at)], plane, method)
    k = len(dirs)
    n = points_per_direction(resolution, k)
    extent = axes(span, k, method, [p.coords for p in paths])
    grid = np.meshgrid(*[np.linspace(lo, hi, n) for lo, hi in extent], indexing="ij")
    check_grid_memory(n**k, plane, max_memory)
    coords = torch.tensor(np.stack(grid, -1), dtype=torch.float64)
    with torch.no_grad():
        loss = plane(coords).numpy()
    valid_loss = None
    if method == "interpolate" and first.has_valid:
        other = PlaneLoss(model, first.loss_fn, first.x_valid, first.y_valid, origin, stack, dtype)
        with torch.no_grad():
            valid_loss = other(coords).numpy()
    box = tuple((float(lo), float(hi)) for lo, hi in extent)
    names = {"pca": "PCA plane", "random": "random plane", "given": "plane"}
    return Landscape(
        fn=plane,
        dim=k,
        name=f"{data_name} loss on the " + ("init→final line" if k == 1 else names[method]),
        domain=box,
        view=box,
        formula=(
            f"loss(w₀ + α·(w₁ − w₀)), a line through {layout.total:,} weights"
            if k == 1
            else f"loss(w + α·d₁ + β·d₂), a slice of the {layout.total:,}-D weight space"
        ),
        reference=_reference(method),
        style="network",
        method=method,
        center=origin.detach().to(dtype),
        directions=tuple(d.to(dtype) for d in dirs),
        alphas=grid[0][:, 0] if k == 2 else grid[0],
        betas=grid[1][0, :] if k == 2 else None,
        loss=loss,
        valid_loss=valid_loss,
        explained=explained,
        paths=tuple(paths),
        data=data_name,
    )


def _walk(plane: Landscape, projected: ProjectedPath):
    from ..descent.trajectory import Trajectory
    from ..status import RUNNING

    coords = torch.tensor(projected.coords, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(plane.fn(coords).sum(), coords)
    norms = grad.abs().amax(-1).numpy()
    path = projected.coords[:, None, :]
    values = projected.plane_loss[:, None]
    return Trajectory(
        path=path,
        _values=values,
        _grad_norms=norms[:, None],
        recorded=projected.steps,
        start_=path[0],
        x_=path[-1],
        value_=values[-1],
        grad_norm_=norms[-1:],
        steps_=projected.steps[-1:],
        status_=np.array([RUNNING], dtype=np.int8),
        meta={
            # short: the pictures' titles add the optimizer and the point count
            "function": f"{'PCA' if plane.method == 'pca' else plane.method} plane"
            + (
                f" ({' + '.join(f'{v:.0%}' for v in plane.explained)} of path)"
                if plane.explained
                else ""
            ),
            "optimizer": projected.optimizer or "training",
            "lr": projected.lr,
            "dim": plane.dim,
            "single": True,
            "minima": [],
            "minimum_value": None,
            "kept": True,
        },
        objective=plane,
    )


# ---- checks --------------------------------------------------------------------------------
def _check_learners(learns) -> Weights:
    from .learner import Learner

    for learn in learns:
        if not isinstance(learn, Learner):
            raise DescentError(f"landscape takes fitted Learners, got {type(learn).__name__}")
    layout = Weights(learns[0].model)
    for learn in learns:
        if learn.steps_done == 0:
            raise DescentError(
                "this Learner has not been fitted yet: call learn.fit(epochs, keep_weights=1) "
                "first, then draw its landscape"
            )
        other = Weights(learn.model)
        if other.shapes != layout.shapes:
            raise DescentError(
                "the Learners train different models (their parameters differ in shape); one "
                "plane needs the same model"
            )
    return layout


def _method(directions) -> str:
    if isinstance(directions, str):
        if directions not in METHODS:
            raise UnknownNameError("directions", directions, METHODS)
        return directions
    if isinstance(directions, (list, tuple)) and len(directions) in (1, 2):
        return "given"
    raise DescentError(
        "directions must be 'pca', 'random', 'interpolate', or a list of one or two directions "
        f"(flat tensors or state dicts), got {type(directions).__name__}"
    )


def _kept(learn, method: str) -> tuple[torch.Tensor, list[int]]:
    if not len(learn.weights_at):
        if method == "pca":
            raise DescentError(
                "PCA directions come from the weights kept during training, and none were: "
                "fit with keep_weights=k (every k steps), e.g. learn.fit(5, keep_weights=1)"
            )
        return torch.zeros(0, Weights(learn.model).total), []
    if method == "pca" and len(learn.weights_at) < 3:
        raise DescentError(
            f"PCA needs at least 3 kept weights, this training kept {len(learn.weights_at)}; fit "
            "longer or keep them more often (a smaller keep_weights)"
        )
    return learn.weights, list(learn.weights_at)


def _initial_weights(learn) -> torch.Tensor:
    if len(learn.weights_at) and learn.weights_at[0] == 0:
        return learn.weights[0]
    if learn.history["params"]:
        return learn.history["params"][0]
    raise DescentError(
        "the line from the initial weights needs them kept: fit with keep_weights=k "
        "(or record_params=True) from the first step"
    )


def _center(center, learns, kept, layout: Weights, method: str) -> torch.Tensor:
    if center is None:
        center = "mean" if len(learns) > 1 and method == "pca" else "final"
    if isinstance(center, str):
        if center == "final":
            return layout.flat(learns[0].model).float()
        rows = [k for k, _ in kept if len(k)]
        if not rows:
            raise DescentError(f"center={center!r} needs kept weights: fit with keep_weights=k")
        if center == "start":
            return rows[0][0].float()
        if center == "mean":
            return torch.cat(rows).double().mean(0)
        raise UnknownNameError("center", center, ("final", "mean", "start"))
    return as_flat(center, layout, None)


# ---- the paths ------------------------------------------------------------------------------
def _project_all(learns, kept, plane: PlaneLoss, method: str) -> list[ProjectedPath]:
    paths = []
    for learn, (rows, steps) in zip(learns, kept, strict=True):
        if not len(steps):
            continue
        paths.append(project(rows, steps, plane, learn.plan.name, learn.lr))
    return paths


def project(
    rows: torch.Tensor, steps, plane: PlaneLoss, optimizer: str = "", lr: float = math.nan
) -> ProjectedPath:
    """Kept weights ``(K, P)`` projected onto `plane` by least squares, with their residuals."""
    d = plane.directions.double()
    moved = rows.double() - plane.center.double()
    gram = d @ d.T
    coords = torch.linalg.solve(gram, d @ moved.T).T  # (K, k)
    distance = (moved - coords @ d).norm(dim=1)
    with torch.no_grad():
        true_loss = plane.at_weights(rows)
        plane_loss = plane(coords)
    return ProjectedPath(
        label=f"{optimizer} lr={lr:g}" if optimizer else "",
        steps=np.asarray(steps),
        coords=coords.numpy(),
        true_loss=true_loss.double().numpy(),
        plane_loss=plane_loss.double().numpy(),
        distance=distance.numpy(),
        optimizer=optimizer,
        lr=lr,
    )


def _reference(method: str) -> str:
    return {
        "pca": "Li, Xu, Taylor, Studer, Goldstein 2018, Visualizing the Loss Landscape of "
        "Neural Nets, section 7",
        "random": "Li et al. 2018, section 4 (filter-normalized directions)",
        "interpolate": "Goodfellow, Vinyals, Saxe 2015, Qualitatively characterizing neural "
        "network optimization problems",
    }.get(method, "")
