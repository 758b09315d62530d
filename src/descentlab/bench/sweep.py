"""`bench`: fair optimizer comparisons — functions x optimizers x learning rates x seeds.

The protocol, after COCO's: a run is N random starts in the function's domain, S steps; a start
succeeds when ``f - f* <= target``, and its *steps to target* is the first step where it does.
Learning rates are tuned on one seed (`seed`): per (function, optimizer) the rate with the
highest success rate wins (ties: fewer steps to target, then fewer diverged starts, then the
smaller final gap). The chosen rate is then run on `seeds` fresh seeds (``seed + 1, ...``), and
those are the numbers reported, so no optimizer is judged on the starts its rate was picked on.

Every (function, optimizer, rate, seed) is one block of work, `run_block`; blocks run here, in
order, or as Dask tasks on a cluster (``scheduler="local"`` starts a `LocalCluster`, or give
``"tcp://host:8786"``). The table is the same either way.

    >>> result = bench(["himmelblau"], ["gd", "adam"], [0.001, 0.01], starts=100, steps=100)
    >>> result.table  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..descent import optimizers as optimizer_registry
from ..descent import schedules
from ..descent.loop import check_engine, descend
from ..errors import DescentError, MemoryNeedError, check_positive
from ..files import atomic_file, check_target
from ..problem import functions as registry
from ..problem.starts import random as random_starts
from ..status import DIVERGED, INTERRUPTED
from .runners import runner_for

if TYPE_CHECKING:  # pandas is imported where a table is made: at module level it was a large
    import pandas as pd  # part of every run's import (benchmarks/results/loop_helpers.md)

DEFAULT_FUNCTIONS = (
    "sphere",
    "himmelblau",
    "six_hump_camel",
    "rosenbrock",
    "rastrigin",
    "ackley",
    "beale",
    "booth",
    "levy",
    "styblinski_tang",
)
DEFAULT_OPTIMIZERS = ("gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
DEFAULT_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
COLUMNS = (
    "phase",
    "function",
    "dim",
    "optimizer",
    "lr",
    "schedule",
    "seed",
    "starts",
    "steps",
    "target",
    "success_rate",
    "diverged_fraction",
    "median_steps_to_target",
    "ert_steps",
    "median_final_gap",
    "chosen",
    "engine",
    "time_s",
)


@dataclass(frozen=True)
class Block:
    """One unit of work: a function, an optimizer at one rate, one seed of random starts."""

    function: str
    dim: int | None
    optimizer: str
    lr: float
    seed: int
    starts: int
    steps: int
    target: float
    phase: str
    engine: str = "auto"
    # (name, ((key, value), ...)): a schedule whose base rate is `lr` (hashable, as a Block is)
    schedule: tuple | None = None


def _engines(
    engine: str,
    dims: dict,
    optimizers,
    lr: float,
    starts: int,
    work_steps: int,
    schedule: tuple | None = None,
    steps: int = 0,
):
    """The engine for every block of each (function, optimizer), decided once, here, so local
    and Dask runs use the same arithmetic: with ``auto``, the C loop where its build repays
    over all of that pair's blocks together (one block alone rarely would), named
    ``compiled``, else ``eager`` (not ``auto``: a fresh Dask worker would decide otherwise).
    The loops are built together first, one compiler per core (`engine.prebuild`)."""
    from .. import engine as compiled
    from ..descent.loop import Settings

    pairs = [(f, o) for f in dims for o in optimizers]
    if engine not in ("auto", "compiled"):
        return dict.fromkeys(pairs, engine)
    specs = {}
    for f, o in pairs:
        objective, plan = registry.get(f, dims[f]), optimizer_registry.resolve(o, lr)
        # as run_block's runs: float32 on the CPU, max-norm, no bounds, no tolerance, every
        # step recorded, the schedule planned over their steps
        settings = Settings.of(steps=steps, schedule=_as_given(schedule), plan=plan)
        spec, reason = compiled.spec_for(
            objective, plan, "autograd", objective.dim, torch.float32, "cpu", settings
        )
        if reason is not None:
            continue
        if engine == "auto" and not compiled.worth_compiling(
            spec, starts, work_steps, 1, single=False
        ):
            continue
        specs[f, o] = spec
    compiled.prebuild(list(specs.values()))
    if engine == "compiled":
        return dict.fromkeys(pairs, engine)
    return {
        pair: "compiled" if pair in specs and compiled.c_kernel(specs[pair]) else "eager"
        for pair in pairs
    }


def run_block(block: Block) -> tuple[dict, np.ndarray]:
    """Run one block; returns its table row and each start's steps to target (-1: never)."""
    objective = registry.get(block.function, block.dim)
    began = time.perf_counter()
    run = descend(
        objective,
        random_starts(block.starts, seed=block.seed),
        optimizer=block.optimizer,
        lr=block.lr,
        steps=block.steps,
        tol=None,  # every start takes the whole budget, as COCO's runs do
        record="all",
        engine=block.engine,
        progress=False,
        schedule=_as_given(block.schedule),
    )
    elapsed = time.perf_counter() - began
    if (run.status_ == INTERRUPTED).any():  # Ctrl-C inside the run: stop the sweep, not the block
        raise KeyboardInterrupt
    gaps = run.values - objective.minimum_value  # (rows, N); rows are steps 0..k
    hit = gaps <= block.target
    reached = hit.any(axis=0)
    first = np.where(reached, run.recorded[hit.argmax(axis=0)], -1)
    final_gap = run.value_ - objective.minimum_value
    successes = int(reached.sum())
    # COCO's expected running time: every start's steps until success, or all it took (a
    # diverged one stops where it diverged), over the successes
    spent = np.where(reached, first, run.steps_).sum()
    row = {
        "phase": block.phase,
        "function": objective.name,
        "dim": objective.dim,
        "optimizer": block.optimizer,
        "lr": block.lr,
        "schedule": schedules.describe(_as_given(block.schedule)) if block.schedule else "constant",
        "seed": block.seed,
        "starts": block.starts,
        "steps": block.steps,
        "target": block.target,
        "success_rate": successes / block.starts,
        "diverged_fraction": float((run.status_ == DIVERGED).mean()),
        "median_steps_to_target": float(np.median(first[reached])) if successes else math.nan,
        "ert_steps": float(spent / successes) if successes else math.inf,
        "median_final_gap": float(
            np.nanmedian(np.where(np.isfinite(final_gap), final_gap, np.inf))
        ),
        "chosen": False,
        "engine": run.meta["engine"],
        "time_s": elapsed,
    }
    return row, first.astype(np.int32)


@dataclass
class BenchResult:
    """The tidy table (one row per block) and each reported block's steps to target."""

    table: pd.DataFrame
    hits: dict[tuple[str, str, float, int], np.ndarray] = field(repr=False)

    @property
    def chosen(self) -> pd.DataFrame:
        """The rate chosen per (function, optimizer) and its mean results over fresh seeds.
        `edge` says when the chosen rate is the largest or smallest tried ("high", "low"):
        a better one may lie outside the grid."""
        report = self.table[self.table.phase == "report"]
        keys = ["function", "optimizer", "lr"]
        out = report.groupby(keys, sort=False, as_index=False)[
            ["success_rate", "diverged_fraction", "median_steps_to_target", "median_final_gap"]
        ].mean()
        tried = self.table[self.table.phase == "tune"].lr
        if tried.nunique() > 1:
            out["edge"] = np.select(
                [out.lr == tried.max(), out.lr == tried.min()], ["high", "low"], default=""
            )
        else:
            out["edge"] = ""
        return out

    def plot(self, kind: str = "ecdf", path=None):
        """The sweep as a picture: ``"ecdf"``, the fraction of starts at the target by step per
        optimizer (COCO's runtime ECDF, one panel per function); ``"success"``, the success
        rate of each chosen rate. Returns the Figure (``path=`` writes it too)."""
        from ..plot import bench as pictures
        from ..plot._common import save_figure

        if kind not in ("ecdf", "success"):
            raise DescentError(f"kind must be 'ecdf' or 'success', got {kind!r}")
        fig = pictures.ecdf_curves(self.ecdf()) if kind == "ecdf" else pictures.heatmap(self)
        if path is not None:
            save_figure(fig, path)
        return fig

    def _repr_html_(self) -> str:
        from ..plot import display

        return display.bench(self)

    def edges(self) -> list[str]:
        """One line per (function, optimizer) whose chosen rate lies at the edge of the grid."""
        return [
            f"{row.function} / {row.optimizer}: the best rate, {row.lr:g}, is the "
            f"{'largest' if row.edge == 'high' else 'smallest'} tried"
            for row in self.chosen.itertuples()
            if row.edge
        ]

    def ecdf(self, points: int = 60) -> pd.DataFrame:
        """COCO-style ECDF per (function, optimizer): the fraction of all reported starts that
        reached the target by step t, at log-spaced t (tidy: function, optimizer, step,
        fraction)."""
        import pandas as pd

        steps = int(self.table.steps.max())
        grid = np.concatenate([[0], np.unique(np.geomspace(1, steps, points).astype(int))])
        rows = []
        for (function, optimizer), group in self._hits_by_pair().items():
            first = np.concatenate(group)
            reached = first[first >= 0]
            counts = np.searchsorted(np.sort(reached), grid, side="right")
            rows += [
                (function, optimizer, int(t), c / len(first))
                for t, c in zip(grid, counts, strict=True)
            ]
        return pd.DataFrame(rows, columns=["function", "optimizer", "step", "fraction"])

    def _hits_by_pair(self) -> dict[tuple[str, str], list[np.ndarray]]:
        out: dict[tuple[str, str], list[np.ndarray]] = {}
        for (function, optimizer, _lr, _seed), first in self.hits.items():
            out.setdefault((function, optimizer), []).append(first)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the table as CSV or Parquet, by the file's extension, atomically."""
        return save_table(self.table, path)

    def report(self, folder: str | Path) -> Path:
        """Heatmap, ECDF curves and an HTML page in `folder`; returns the page's path."""
        from ..plot.bench import report

        return report(self, folder)


def bench(
    functions: Sequence[str] = DEFAULT_FUNCTIONS,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    lrs: Sequence[float] = DEFAULT_LRS,
    *,
    starts: int = 1000,
    steps: int = 500,
    seed: int = 0,
    seeds: int = 3,
    target: float = 1e-4,
    dim: int | None = None,
    engine: str = "auto",
    schedule=None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    progress=None,
) -> BenchResult:
    """Tune each optimizer's learning rate per function on seed `seed`, then report the chosen
    rate on `seeds` fresh seeds.

    Args:
        functions: registered function names (each needs a known minimum value f*).
        optimizers: optimizer names (``gd momentum nesterov adagrad rmsprop adam ...``).
        lrs: the learning rates to try.
        starts: random starts per block, drawn uniformly in the function's domain.
        steps: steps per start.
        seed: the tuning seed; reports use ``seed + 1 ... seed + seeds``.
        seeds: fresh seeds the chosen rate is reported on.
        target: a start succeeds when ``f - f* <= target``.
        dim: dimension for the d-dimensional functions (default 2); the functions defined in 2
            dimensions only keep theirs.
        engine: `descend`'s engine for every block; with ``"auto"``, the compiled engine's C
            loop for each (function, optimizer) whose blocks together repay building it.
        schedule: a learning-rate schedule for every block, by name (``"cosine"``) or as
            ``(name, settings)`` (``("cosine", {"warmup": 5})``); each rate tried is then the
            schedule's base rate. (A factory cannot travel to Dask's workers by name: give it
            to `descend`.)
        scheduler: None (run here), ``"local"`` (a Dask `LocalCluster`) or a Dask scheduler
            address such as ``"tcp://10.0.0.5:8786"``.
        out: also write the table here (``.csv`` or ``.parquet``).
        progress: called as ``progress(done, total)`` after each block.
    """
    import pandas as pd

    dims = _check_names(functions, optimizers, lrs, dim)  # name: its dim
    names = list(dims)
    _check_counts(starts, steps, seed, seeds)
    _check_block_memory(dims, starts, steps, scheduler)
    check_positive("target", target)
    if out is not None:  # a bad extension or folder fails before any work
        _table_format(out)
        check_target(out, "table")
    check_engine(engine)
    schedule = _schedule(schedule, steps)
    blocks = len(lrs) + seeds  # per (function, optimizer)
    work = steps * blocks
    engines = _engines(engine, dims, optimizers, lrs[0], starts, work, schedule, steps)
    runner = runner_for(scheduler)
    try:
        tune = [
            Block(
                f,
                dims[f],
                o,
                float(lr),
                seed,
                starts,
                steps,
                target,
                "tune",
                engines[f, o],
                schedule,
            )
            for f in names
            for o in optimizers
            for lr in lrs
        ]
        total = len(tune) + len(names) * len(optimizers) * seeds
        results = runner(run_block, tune, progress, 0, total)
        rows = [row for row, _ in results]
        best = _choose(rows)
        for row in rows:
            row["chosen"] = best[(row["function"], row["optimizer"])] == row["lr"]
        report = [
            Block(
                f,
                dims[f],
                o,
                best[(registry.get(f, dims[f]).name, o)],
                s,
                starts,
                steps,
                target,
                "report",
                engines[f, o],
                schedule,
            )
            for f in names
            for o in optimizers
            for s in range(seed + 1, seed + 1 + seeds)
        ]
        reported = runner(run_block, report, progress, len(tune), total)
    except BaseException as exc:  # Ctrl-C, a cluster that lost its workers, a failed block
        if out is None or not runner.finished:
            raise
        save_table(pd.DataFrame(runner.finished, columns=list(COLUMNS)), out)  # keep them
        if isinstance(exc, DescentError):
            raise DescentError(
                f"{exc} (the {len(runner.finished)} blocks that finished are in {out})"
            ) from None
        raise
    finally:
        runner.close()
    hits = {}
    for row, first in reported:
        rows.append(row)
        hits[(row["function"], row["optimizer"], row["lr"], row["seed"])] = first
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    result = BenchResult(table, hits)
    if out is not None:
        result.save(out)
    return result


def pool_ecdf(ecdf: pd.DataFrame) -> pd.DataFrame:
    """One ECDF per optimizer over all functions of `BenchResult.ecdf`, each function weighing
    the same (every function has as many starts), as COCO's aggregated plots (optimizer, step,
    fraction)."""
    return ecdf.groupby(["optimizer", "step"], sort=False, as_index=False).fraction.mean()


def _schedule(schedule, steps: int) -> tuple | None:
    """`bench`'s schedule as (name, settings), checked before any work."""
    if schedule is None:
        return None
    if callable(schedule):
        raise DescentError(
            "bench takes a schedule by name, e.g. 'cosine' or ('cosine', {'warmup': 5}): its "
            "blocks may run on other machines; give a factory to descend"
        )
    name, settings = schedules.named(schedule)
    schedules.resolve((name, settings), steps)  # a bad name or setting says so now
    return (name, tuple(settings.items()))


def _as_given(schedule: tuple | None) -> tuple | None:
    """A Block's schedule as `descend` takes it: (name, {settings})."""
    return None if schedule is None else (schedule[0], dict(schedule[1]))


def _choose(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Best rate per (function, optimizer): most successes, then fewest steps to target, then
    the fewest diverged starts, then the smallest final gap. Without the diverged fraction, a
    function no rate solves was given the rate at which every start diverged, when its
    diverged starts had stopped at a smaller median gap than the others' stalled ones."""
    best: dict[tuple[str, str], tuple] = {}
    for row in rows:
        steps = row["median_steps_to_target"]
        gap = row["median_final_gap"]
        score = (
            -row["success_rate"],
            math.inf if math.isnan(steps) else steps,
            row["diverged_fraction"],
            math.inf if math.isnan(gap) else gap,
            row["lr"],
        )
        key = (row["function"], row["optimizer"])
        if key not in best or score < best[key]:
            best[key] = score
    return {key: score[-1] for key, score in best.items()}


def _check_names(fns, opts, lrs, dim) -> dict[str, int | None]:
    """Checks the lists; returns each function's `dim` argument: `dim` for the d-dimensional
    ones, None for those defined in 2 dimensions only (unless none is d-dimensional, where
    `dim` is a mistake the registry names)."""
    for label, items in (("functions", fns), ("optimizers", opts), ("lrs", lrs)):
        if isinstance(items, str) or not isinstance(items, Sequence) or len(items) == 0:
            raise DescentError(f"{label} must be a non-empty list, got {items!r}")
        if len(set(items)) != len(items):
            raise DescentError(f"{label} lists the same entry twice: {list(items)}")
    for name in fns:
        registry.get(name)  # unknown names suggest the closest
    any_dim = {name: registry.REGISTRY[registry.normalize_name(name)].any_dim for name in fns}
    dims = {name: dim if any_dim[name] or not any(any_dim.values()) else None for name in fns}
    for name in fns:
        objective = registry.get(name, dims[name])
        if objective.minimum_value is None:
            raise DescentError(f"{name!r} has no known minimum value, which bench needs for f*")
    for name in opts:
        optimizer_registry.resolve(name, 0.01)  # unknown names suggest the closest
    for lr in lrs:
        check_positive("lr", lr)
    return dims


def _check_counts(starts, steps, seed, seeds) -> None:
    for label, value, low in (
        ("starts", starts, 1),
        ("steps", steps, 1),
        ("seed", seed, 0),
        ("seeds", seeds, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DescentError(f"{label} must be an integer >= {low}, got {value!r}")


def _check_block_memory(dims, starts, steps, scheduler) -> None:
    """Refuse, before any work, a block that cannot fit: every step's positions, values and
    norms in float32, as `run_block` records them, its starts and the run's own arrays. A
    `LocalCluster` runs one block per core at once; a remote cluster's memory is not known
    here."""
    from ..memory import _gb, memory_budget, point_row_bytes, run_point_bytes

    if scheduler not in (None, "local"):
        return
    d = max(registry.get(name, dim).dim for name, dim in dims.items())
    # the recording, the start and the run's own arrays (with two optimizer tensors, Adam's)
    per_start = (steps + 1) * point_row_bytes(d, torch.float32) + d * 4
    per_start += run_point_bytes(d, torch.float32, 2)
    workers = (os.cpu_count() or 1) if scheduler == "local" else 1
    budget = memory_budget() / workers
    if starts * per_start <= budget:
        return
    where = f" per worker of {workers}" if workers > 1 else ""
    raise MemoryNeedError(
        f"a block of {starts:,} starts x {steps:,} steps in {d}-D needs "
        f"{_gb(starts * per_start)}, but {_gb(budget)} is available{where}; use starts <= "
        f"{max(1, int(budget // per_start)):,} or fewer steps"
    )


def _table_format(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    close = difflib.get_close_matches(suffix, [".csv", ".parquet"], n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise DescentError(
        f"the table is written as .csv or .parquet, not {suffix or 'no extension'!r}{hint}"
    )


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write `table` as CSV or Parquet by extension, through a temporary file."""
    path = Path(path)
    kind = _table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(path) as tmp:
            if kind == "csv":
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)
    except ImportError:
        raise DescentError("writing .parquet needs pyarrow: pip install pyarrow") from None
    return path


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by `bench` (CSV or Parquet)."""
    import pandas as pd

    kind = _table_format(path)
    return pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
