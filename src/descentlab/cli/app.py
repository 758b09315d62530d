"""The `descentlab` command (Typer + Rich).

    descentlab functions
    descentlab show himmelblau
    descentlab descend "1.2*x**2 + 4" --start -3 --lr 0.2 --steps 10 --trace
    descentlab descend six_hump_camel --grid 50 --lr 0.01 --steps 300 --save camel.npz

Errors print as one line on stderr and exit with status 2; Ctrl-C during a descent keeps (and
with --save, writes) what was computed and exits with status 130.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import defaults
from ..descent.loop import DEFAULT_STEPS, descend
from ..descent.trajectory import Trajectory
from ..errors import DescentError
from ..files import check_target
from ..memory import _gb, allocation_failure
from ..memory import limits as memory_limits
from ..problem import functions as registry
from ..problem.starts import grid as make_grid
from ..problem.starts import random as make_random
from . import bench as cli_bench
from . import explore as cli_explore
from . import fit as cli_fit

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Gradient descent you can see and measure.",
)
# no markup: messages and names are printed as they are ("pip install 'descentlab[scale]'"
# would lose its "[scale]" as a style tag); styles are set with `Text`
out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)


def _error_line(message: object) -> Text:
    return Text.assemble(("error:", "bold red"), f" {message}")


def _friendly(command):
    """Print domain errors as one line without a traceback, and exit non-zero."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DescentError as exc:
            err.print(_error_line(for_the_command_line(str(exc))), soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            err.print(_error_line(f"{exc.strerror or exc}: {exc.filename or ''}"), soft_wrap=True)
            raise typer.Exit(1) from None
        except (MemoryError, RuntimeError) as exc:  # after a run: its summary or pictures
            if not allocation_failure(exc):
                raise
            room, name = min(memory_limits())
            message = (
                f"out of memory under {name} ({_gb(room)} left) after the run, while "
                "showing its results: use fewer points"
            )
            err.print(_error_line(message), soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


# the library's messages name Python arguments; on the command line, name the options
_OPTIONS = [
    (r"pass bounds=\(lo, hi\) or one \(lo, hi\) per axis", "give --bounds LO,HI (or LO,HI;LO,HI)"),
    (r"pass dim= or bounds with one \(lo, hi\) per axis", "give --dim D or --bounds LO,HI;LO,HI"),
    (r"\bdim=(\d+)", r"--dim \1"),
    (r"\bengine='(\w+)'", r"--engine \1"),
    (r"\brecord='(\w+)'", r"--record \1"),
    (r"\brecord=(\d+)", r"--record \1"),
    (r"\bgrad='(\w+)'", r"--grad \1"),
    (r"^threads must", "--threads must"),
]


def for_the_command_line(message: str) -> str:
    """A library message with its Python arguments named as this command's options."""
    for pattern, replacement in _OPTIONS:
        message = re.sub(pattern, replacement, message)
    return message


def _check_function(function: str, dim: int | None) -> None:
    """A misspelled name or a bad formula is reported first, before any problem with the
    starts (which need the function's domain)."""
    from ..problem.resolve import named_or_formula

    named_or_formula(function, dim)


def _num(v: float) -> str:
    return f"{v:.6g}"


def _point(p) -> str:
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    return "(" + ", ".join(_num(v) for v in p) + ")" if p.size > 1 else _num(p[0])


def _domain(obj) -> str:
    if not obj.domain:
        return "—"
    first = obj.domain[0]
    if all(b == first for b in obj.domain):
        return f"[{_num(first[0])}, {_num(first[1])}]^{obj.dim}"
    return " × ".join(f"[{_num(lo)}, {_num(hi)}]" for lo, hi in obj.domain)


@app.command("functions")
def functions_command() -> None:
    """List the built-in test functions with dimension, domain and global minima."""
    table = Table(title="descentlab test functions")
    for col in ("name", "dim", "domain", "f*", "global minima"):
        table.add_column(col)
    for name in registry.names():
        obj = registry.get(name)
        any_dim = registry.REGISTRY[name].any_dim
        minima = obj.minima if len(obj.minima) <= 2 else [*obj.minima[:2], "…"]
        table.add_row(
            name,
            "d" if any_dim else str(obj.dim),
            _domain(obj) if not any_dim else _domain(obj).replace("^2", "^d"),
            _num(obj.minimum_value) + (" (d=2)" if name == "styblinski_tang" else ""),
            f"{len(obj.minima)}: "
            + ", ".join(m if isinstance(m, str) else _point(m) for m in minima),
        )
    out.print(table)


@app.command()
@_friendly
def show(
    name: str = typer.Argument(..., help="a registered function name"),
    dim: int = typer.Option(None, help="dimension, for d-dimensional functions"),
) -> None:
    """Show one function: formula, domain and every global minimum."""
    obj = registry.get(name, dim)
    out.print(Text.assemble((obj.name, "bold"), f"  (dimension {obj.dim})"))
    expression = registry.EXPRESSIONS.get(obj.name)
    if expression is not None:  # what descend accepts, so it can be pasted and edited
        out.print(f"f(x, y) = {expression}", soft_wrap=True)
    else:
        out.print(f"f(x) = {obj.formula}  (any dimension: descentlab descend {obj.name} --dim D)")
    out.print(f"domain: {_domain(obj)}")
    out.print(f"global minimum f* = {obj.minimum_value!r} at {len(obj.minima)} point(s):")
    for i, m in enumerate(obj.minima):
        out.print(f"  [{i}] {_point(m)}")
    out.print(f"reference: {obj.reference}")


def _parse_points(text: str) -> list[tuple[float, ...]] | tuple[float, ...]:
    try:
        points = [
            tuple(float(v) for v in part.split(",")) for part in text.split(";") if part.strip()
        ]
    except ValueError:
        raise DescentError(
            f"--start {text!r} is not numbers; write x or x,y or several points as 'x,y;x,y'"
        ) from None
    if not points:
        raise DescentError("--start is empty; write x or x,y")
    return points[0] if len(points) == 1 else points


def _parse_bounds(text: str | None):
    if text is None:
        return None
    pts = _parse_points(text)
    pts = [pts] if isinstance(pts, tuple) else pts
    if any(len(p) != 2 for p in pts):
        raise DescentError(
            f"--bounds {text!r} must be lo,hi or one lo,hi per axis as 'lo,hi;lo,hi'"
        )
    return pts[0] if len(pts) == 1 else pts


def _parse_options(options: list[str]) -> dict:
    hyper = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DescentError(f"--option {item!r} must look like key=value, e.g. betas=(0.9,0.99)")
        try:
            hyper[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise DescentError(
                f"--option {item!r}: the value must be a number, tuple or True/False"
            ) from None
    return hyper


def _record(text: str):
    if text in ("all", "final"):
        return text
    try:
        return int(text)
    except ValueError:
        raise DescentError(f"--record must be all, final or an integer k, got {text!r}") from None


@app.command("descend")
@_friendly
def descend_command(
    function: str = typer.Argument(..., help="a function name (see `functions`) or a formula"),
    start: str = typer.Option(None, help="start point x or x,y (several: 'x,y;x,y')"),
    grid: int = typer.Option(None, help="start from an n-per-axis grid over the domain"),
    random: int = typer.Option(None, help="start from n uniform random points"),
    seed: int = typer.Option(0, help="seed for --random"),
    bounds: str = typer.Option(None, help="box for --grid/--random: lo,hi or lo,hi;lo,hi"),
    dim: int = typer.Option(None, help="dimension of d-dimensional functions"),
    optimizer: str = typer.Option(
        "gd", "--optimizer", "-O", help="gd, momentum, adam, ..., or module:Class"
    ),
    lr: float = typer.Option(None, help="learning rate (default 0.01)"),
    momentum: float = typer.Option(None, help="momentum (gd, momentum, nesterov, rmsprop)"),
    option: list[str] = typer.Option([], "--option", "-o", help="optimizer setting key=value"),
    steps: int = typer.Option(DEFAULT_STEPS, help="most steps per point"),
    tol: str = typer.Option(
        "auto",
        help="stop a point when its gradient norm < tol: a number, 'auto' (100 eps times the "
        "starts' median gradient norm: a walk at a minimum converges) or 'none'",
    ),
    norm: str = typer.Option("inf", help="gradient norm for --tol: inf or 2"),
    grad: str = typer.Option("autograd", help="autograd or central"),
    record: str = typer.Option("all", help="all, final, or every k-th step"),
    dtype: str = typer.Option("float32", help="float32 or float64"),
    save: Path = typer.Option(None, help="write the trajectory to this .npz file"),
    trace: bool = typer.Option(False, help="print f(x) = y for every step (seed style)"),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="progress bar"),
    plot: Path = typer.Option(None, help="contour (2-D) or curve (1-D) figure: .png .svg .pdf"),
    animate: Path = typer.Option(None, help="animation: .gif or .mp4"),
    surface: Path = typer.Option(None, help="3-D surface picture: .png (PyVista if installed)"),
    html: Path = typer.Option(None, help="interactive page: .html"),
    engine: str = typer.Option("auto", help="auto, eager or compiled"),
    schedule: str = typer.Option(
        None, help="learning-rate schedule: cosine, step[step_size=10], exponential, ..."
    ),
    warmup: int = typer.Option(None, help="warm-up steps of --schedule cosine or warmup"),
) -> None:
    """Run gradient descent from one point, a grid or random points, and summarise it."""
    _check_function(function, dim)
    pictures = _check_pictures(plot=plot, animate=animate, surface=surface, html=html)
    if save is not None:  # before the run, not after it
        check_target(save if save.suffix == ".npz" else save.with_name(save.name + ".npz"), "run")
    hyper = _parse_options(option)
    if momentum is not None:
        hyper["momentum"] = momentum
    run = descend(
        function,
        _starts(start, grid, random, seed, bounds),
        optimizer=_optimizer_of(optimizer, "--optimizer"),
        lr=lr,
        steps=steps,
        tol=_tol(tol),
        norm=norm,
        record=_record(record),
        dtype=dtype,
        progress=progress,
        grad=grad,
        dim=dim,
        engine=engine,
        schedule=_schedule(schedule, warmup),
        **hyper,
    )
    if trace:
        typer.echo("\n".join(run.trace_lines(final=run.converged is True)))
    _print_summary(run)
    if save is not None:
        written = run.save(save)
        out.print(f"saved {written}")
    _write_pictures(run, pictures)
    if (run.status_ == 3).any():
        err.print(f"interrupted after {run.iterations} steps; results above are partial")
        raise typer.Exit(130)


@app.command("race")
@_friendly
def race_command(
    function: str = typer.Argument(..., help="a function name or a formula"),
    optimizers: str = typer.Option(
        ",".join(defaults.OPTIMIZERS),
        help="comma-separated names, each with settings if wanted: 'gd,adam[betas=(0.9,0.99)]'",
    ),
    lrs: str = typer.Option(None, help="race learning rates of the first optimizer instead"),
    start: str = typer.Option(None, help="start point x,y (several: 'x,y;x,y')"),
    grid: int = typer.Option(None, help="start from an n-per-axis grid"),
    random: int = typer.Option(None, help="start from n uniform random points"),
    seed: int = typer.Option(0, help="seed for --random"),
    bounds: str = typer.Option(None, help="box for --grid/--random"),
    dim: int = typer.Option(None, help="dimension of d-dimensional functions"),
    lr: str = typer.Option(None, help="learning rate for every optimizer, or one each: 0.01,0.1"),
    steps: int = typer.Option(defaults.STEPS, help="most steps per point"),
    tol: str = typer.Option(
        "auto",
        help="stop a point when its gradient norm < tol: a number, 'auto' (100 eps times the "
        "starts' median gradient norm: a walk at a minimum converges) or 'none'",
    ),
    plot: Path = typer.Option(None, help="contour figure (.png, .svg, .pdf)"),
    animate: Path = typer.Option(None, help="animation (.gif or .mp4)"),
    surface: Path = typer.Option(None, help="3-D surface picture (.png)"),
    html: Path = typer.Option(None, help="interactive page (.html)"),
    schedule: str = typer.Option(None, help="learning-rate schedule for every entrant"),
    warmup: int = typer.Option(None, help="warm-up steps of --schedule cosine or warmup"),
    record: str = typer.Option("all", help="all, final, or every k-th step"),
) -> None:
    """Several optimizers (or learning rates) from the same starts, side by side."""
    from ..descent.race import race

    _check_function(function, dim)
    pictures = _check_pictures(plot=plot, animate=animate, surface=surface, html=html)
    entries = _race_entries(optimizers)
    rates = None
    if lrs is not None:
        rates = _numbers(lrs, "--lrs")
    per_entry = None if lr is None else dict(zip(entries, _rates(lr, len(entries)), strict=True))
    r = race(
        function,
        _starts(start, grid, random, seed, bounds),
        optimizers=entries,
        lr=per_entry,
        lrs=rates,
        steps=steps,
        tol=_tol(tol),
        dim=dim,
        schedule=_schedule(schedule, warmup),
        record=_record(record),
    )
    table = Table(title=f"race on {function}")
    for col in ("entrant", "best f", "median f", "f − f*", "walks", "at a minimum"):
        table.add_column(col, overflow="fold")

    def short(v: float) -> str:
        return "—" if v != v else f"{v:.3g}"

    rows = r.summary().set_index("label")
    for label, run in r:
        row = rows.loc[label]
        table.add_row(
            label,
            short(row.best_value),
            short(row.median_value),
            short(row.gap),
            run.status_text(",").replace(" (f grew a thousandfold or more)", ""),
            f"{row.reached_minimum:,}" if run.minima else "—",
        )
    out.print(table)
    _write_pictures(r, pictures)


@app.command("tour")
@_friendly
def tour_command(
    out: Path = typer.Option(Path("descentlab-tour"), help="folder for the gallery"),
) -> None:
    """The three lessons (walking down a parabola, breaking down gradient descent, the seven
    steps of training) run end to end, every picture written into a folder with an index.html."""
    from .tour import tour

    tour(out, echo=typer.echo)


def _tol(text: str):
    """``--tol``: "auto", "none" or a number."""
    if text.strip().lower() in ("auto", "none"):
        return None if text.strip().lower() == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise DescentError(f"--tol {text!r} must be a number, 'auto' or 'none'") from None


def _numbers(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DescentError(f"{option} {text!r} must be comma-separated numbers") from None
    if not values:
        raise DescentError(f"{option} needs at least one number")
    return values


def _schedule(text: str | None, warmup: int | None):
    """``--schedule 'step[step_size=10,gamma=0.5]' --warmup 5`` -> ("step", {...})."""
    if text is None:
        if warmup is not None:
            raise DescentError("--warmup goes with --schedule cosine or --schedule warmup")
        return None
    parts = _split_top(text)
    if len(parts) != 1:
        raise DescentError(
            f"--schedule takes one schedule, e.g. 'step[step_size=10]', got {text!r}"
        )
    name, settings = _with_settings(parts[0], "--schedule")
    if warmup is not None:
        settings = {**settings, "warmup": warmup}
    return (name, settings)


def _with_settings(part: str, option: str) -> tuple[str, dict]:
    """``adam[betas=(0.9,0.99),eps=1e-6]`` -> ("adam", {...})."""
    name, bracket, rest = part.partition("[")
    if bracket and not rest.endswith("]"):
        raise DescentError(f"{option} entry {part!r} must end with ]: name[key=value,...]")
    return name.strip(), (_parse_options(_split_top(rest[:-1])) if bracket else {})


def _rates(text: str, n: int) -> list[float]:
    """``--lr``: one rate for all n optimizers, or one each."""
    given = _numbers(text, "--lr")
    if len(given) not in (1, n):
        raise DescentError(f"--lr has {len(given)} rates for {n} optimizers; give one, or one each")
    return given * n if len(given) == 1 else given


def _optimizer_of(name: str, option: str):
    """A registered name as given; ``module:Class`` is that class, imported (any
    torch.optim.Optimizer subclass installed here: ``pytorch_optimizer:Lamb``)."""
    if ":" not in name:
        return name
    module, _, attr = (part.strip() for part in name.partition(":"))
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        raise DescentError(
            f"{option} {name}: cannot import {module!r} ({exc}); install it, or give a "
            "registered name (gd, momentum, adam, ...)"
        ) from None
    cls = getattr(found, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        classes = [
            n
            for n, v in vars(found).items()
            if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
        ]
        close = difflib.get_close_matches(attr, classes, n=1)
        hint = f"; did you mean {module}:{close[0]}?" if close else ""
        raise DescentError(f"{option} {name}: {module} has no optimizer class {attr!r}{hint}")
    return cls


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets and parentheses."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in [*parts, current] if p.strip()]


def _race_entries(text: str) -> dict:
    """``gd,adam[betas=(0.9,0.99),eps=1e-6]`` -> {label: name or (name, settings)}, each label
    the entry as written (numbered where the same one repeats)."""
    entries: dict = {}
    for part in _split_top(text):
        name, hyper = _with_settings(part, "--optimizers")
        name = _optimizer_of(name, "--optimizers")
        label, i = part, 2
        while label in entries:
            label, i = f"{part} #{i}", i + 1
        entries[label] = (name, hyper) if hyper else name
    if not entries:
        raise DescentError("--optimizers needs at least one name, e.g. gd,adam")
    return entries


def _starts(start, grid, random, seed, bounds):
    given = [
        s for s, v in (("--start", start), ("--grid", grid), ("--random", random)) if v is not None
    ]
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        raise DescentError(f"give exactly one of --start, --grid or --random{got}")
    box = _parse_bounds(bounds)
    if start is not None:
        return _parse_points(start)
    if grid is not None:
        return make_grid(grid, box)
    return make_random(random, box, seed=seed)


_PICTURE_FORMATS = {
    "plot": {".png", ".svg", ".pdf", ".jpg", ".jpeg"},
    "animate": {".gif", ".mp4"},
    "surface": {".png", ".jpg", ".jpeg", ".mp4"},
    "html": {".html", ".htm"},
}


def _check_pictures(**paths) -> dict:
    """Refuse a bad output path before the run, not after it."""
    wanted = {k: v for k, v in paths.items() if v is not None}
    if not wanted:  # the plot package imports matplotlib, slow to load: only for a run that draws
        return wanted
    from ..plot._common import check_output

    for kind, path in wanted.items():
        check_output(
            path,
            _PICTURE_FORMATS[kind],
            {"plot": "figure", "animate": "animation", "surface": "surface", "html": "page"}[kind],
        )
    return wanted


def _write_pictures(target, pictures: dict) -> None:
    if not pictures:
        return
    from .. import plot

    runs = list(target) if not isinstance(target, Trajectory) else [("", target)]
    dim = runs[0][1].dim
    for kind, path in pictures.items():
        if kind == "plot":
            (plot.curve if dim == 1 else plot.contour)(target, path=path)
        elif kind == "animate":
            plot.animate(target, path)
        elif kind == "surface":
            plot.surface(target, path=path)  # PyVista when installed, else matplotlib
        else:
            plot.html(target, path)
        out.print(f"wrote {path}")


def _print_summary(run: Trajectory) -> None:
    s = run.summary()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    lr = run.meta["lr"]
    table.add_row("function", f"{s['function']}  (dimension {run.dim})")
    settings = [f"lr={lr:g}"] + [f"{k}={v}" for k, v in (run.meta.get("hyper") or {}).items()]
    table.add_row("optimizer", f"{s['optimizer']}  {', '.join(settings)}")
    if run.meta.get("schedule"):
        rates = run.rates
        shown = (
            f"{rates[0]:.3g} first, {rates.max():.3g} highest, {rates[-1]:.3g} last"
            if len(rates)
            else "no step taken"
        )
        table.add_row("schedule", f"{run.meta['schedule']}: rate {shown}")
    if run.single:
        table.add_row("start", _point(run.start))
        table.add_row("final x", _point(run.x))
        table.add_row("f(x)", _num(float(run.value)))
        table.add_row("gradient norm", _num(float(run.grad_norm)))
        if run.status == "diverging":
            status = (
                f"diverging: f grew {float(run.growth_[0]):.2g}-fold in {run.steps} steps "
                f"(stopped at the step limit); try --lr {lr / 10:g}"
            )
        elif run.status == "step limit":
            status = f"step limit: stopped after {run.steps} steps, still moving"
        elif run.status == "converged":
            status = f"converged at step {run.steps} (gradient norm below {run.meta['tol']:.3g})"
        else:
            status = f"{run.status} at step {run.steps}"
        table.add_row("status", status)
        if run.minima:
            i = run.reached()
            table.add_row(
                "minimum reached",
                f"[{i}] {_point(run.minima[i])}" if i >= 0 else "none (within 0.01)",
            )
    else:
        table.add_row("points", f"{s['points']:,}  ({s['iterations']} iterations)")
        counts = run.status_text(",")
        if s["diverging"]:
            counts = counts.replace(
                " (f grew a thousandfold or more)",
                f" (f grew up to {s['largest_growth']:.2g}-fold; try --lr {lr / 10:g})",
            )
        table.add_row("status", counts)
        for m in s.get("minima", []):
            table.add_row(f"minimum [{m['index']}]", f"{_point(m['point'])}: {m['count']:,} points")
        if "no_minimum" in s:
            table.add_row(
                "no minimum", f"{s['no_minimum']:,} points (not within 0.01 of a global minimum)"
            )
        table.add_row("best", f"f{_point(s['best_x'])} = {_num(s['best_value'])}")
    out.print(table)


cli_fit.register(app, _friendly)
cli_bench.register(app, _friendly, _schedule)
cli_explore.register(app, _friendly, out, err)


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"note: {message}\n"


def main() -> None:
    """Entry point of the `descentlab` console script. Warnings print as one-line notes (a
    fallback, a kernel cache that cannot be used), without a file name and source line."""
    warnings.formatwarning = _one_line
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
