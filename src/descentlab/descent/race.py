"""`race`: several optimizers (or learning rates) from the same starting points, side by side.

>>> r = race("himmelblau", start=(-0.4, -0.65), optimizers=["gd", "adam"], steps=50)
>>> r.labels
['gd', 'adam']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import defaults
from ..errors import DescentError
from .loop import descend
from .trajectory import Trajectory


@dataclass
class Race:
    """Trajectories by label, all from the same objective and starts."""

    runs: dict[str, Trajectory]

    @property
    def labels(self) -> list[str]:
        return list(self.runs)

    @property
    def objective(self):
        return next(iter(self.runs.values())).objective

    def __iter__(self) -> Iterator[tuple[str, Trajectory]]:
        return iter(self.runs.items())

    def __getitem__(self, label: str) -> Trajectory:
        return self.runs[label]

    def __len__(self) -> int:
        return len(self.runs)

    def summary(self):
        """One row per entrant: best and median final value, gap to f*, how many walks ended
        in each outcome (`descentlab.status`), and how many reached a known minimum."""
        import pandas as pd

        rows = []
        for label, run in self:
            s = run.summary()
            fstar = run.meta.get("minimum_value")
            finite = run.value_[np.isfinite(run.value_)]
            rows.append(
                {
                    "label": label,
                    "optimizer": run.meta["optimizer"],
                    "lr": run.meta["lr"],
                    "best_value": s["best_value"],
                    "median_value": float(np.median(finite)) if finite.size else np.nan,
                    "gap": s["best_value"] - fstar if fstar is not None else np.nan,
                    **{k.replace(" ", "_"): c for k, c in run.outcomes().items()},
                    "reached_minimum": int((np.atleast_1d(run.reached()) >= 0).sum()),
                }
            )
        return pd.DataFrame(rows)

    def plot(self, **kwargs):
        """Every entrant's walk in its own colour (`plot.contour`, or `plot.curve` in 1-D)."""
        from .. import plot

        dim = next(iter(self.runs.values())).dim
        if dim == 1:
            return plot.curve(self, **kwargs)
        return plot.contour(self, **kwargs)

    def animate(self, path=None, **kwargs):
        """The entrants moving together (`plot.animate`): a player in a notebook, or a file."""
        from .. import plot

        return plot.animate(self, path, **kwargs)

    def _repr_html_(self) -> str:
        from ..plot import display

        return display.race(self)

    def __repr__(self) -> str:
        return f"<Race {', '.join(self.labels)}>"


def race(
    f,
    start,
    optimizers: Sequence | Mapping = defaults.OPTIMIZERS,
    lr: float | Mapping[str, float] | None = None,
    lrs: Sequence[float] | None = None,
    **kwargs,
) -> Race:
    """Run `descend` once per optimizer (or per learning rate) from the same starts.

    Args:
        f, start: as for `descend`.
        optimizers: names or classes; ``(name, {hyper})`` pairs; or a mapping label -> entry.
        lr: one rate for all, or a mapping optimizer label -> rate.
        lrs: race learning rates instead: one optimizer (the first) at each rate.
        **kwargs: passed to every `descend` (steps, tol, record, dtype, ...); ``schedule``
            may be one for all, or a mapping label -> schedule (one per optimizer).
    """
    if isinstance(optimizers, Mapping):
        entries = list(optimizers.items())
    else:
        entries = [(_label(o), o) for o in optimizers]
    if not entries:
        raise DescentError("race needs at least one optimizer")
    if lrs is not None:
        if not len(lrs):
            raise DescentError("race needs at least one learning rate in lrs")
        base_label, base = entries[0]
        entries = [(f"{base_label} lr={v:g}", base) for v in lrs]
        rates = list(lrs)
    else:
        rates = [lr.get(label) if isinstance(lr, Mapping) else lr for label, _ in entries]
    labels = [label for label, _ in entries]
    if len(set(labels)) != len(labels):
        raise DescentError(
            f"race labels must differ, got {labels}; use a mapping label -> optimizer"
        )
    schedule = kwargs.pop("schedule", None)
    per_label = isinstance(schedule, Mapping) and "name" not in schedule
    if per_label and set(schedule) - set(labels):
        raise DescentError(
            f"schedules given for {sorted(set(schedule) - set(labels))}, which are not entrants "
            f"({', '.join(labels)})"
        )
    runs = {}
    for (label, entry), rate in zip(entries, rates, strict=True):
        name, hyper = entry if isinstance(entry, tuple) else (entry, {})
        mine = schedule.get(label) if per_label else schedule
        runs[label] = descend(
            f, start, optimizer=name, lr=rate, schedule=mine, **{**kwargs, **hyper}
        )
    return Race(runs)


def _label(entry) -> str:
    name = entry[0] if isinstance(entry, tuple) else entry
    return name if isinstance(name, str) else getattr(name, "__name__", str(name))
