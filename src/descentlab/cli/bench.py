"""`descentlab bench`: the optimizer sweep from the shell.

    descentlab bench --functions himmelblau,rastrigin --optimizers gd,adam \\
        --lrs 0.001,0.01,0.1 --starts 1000 --steps 500 --seed 0 --out results.csv --report report/
    descentlab bench --scheduler local              # blocks on a Dask LocalCluster
    descentlab bench --scheduler tcp://10.0.0.5:8786  # or on an existing cluster
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..bench import sweep
from ..errors import DescentError

out = Console(highlight=False, markup=False)  # as `cli`'s: text printed as it is
err = Console(stderr=True, highlight=False, markup=False)


def _names(text: str, label: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise DescentError(f"--{label} is empty; give comma-separated names, e.g. gd,adam")
    return items


def _numbers(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DescentError(f"--lrs {text!r} must be comma-separated numbers") from None
    if not values:
        raise DescentError("--lrs is empty; give comma-separated rates, e.g. 0.001,0.01,0.1")
    return values


def register(app: typer.Typer, friendly, parse_schedule) -> None:
    @app.command("bench")
    @friendly
    def bench_command(
        functions: str = typer.Option(",".join(sweep.DEFAULT_FUNCTIONS), help="function names"),
        optimizers: str = typer.Option(",".join(sweep.DEFAULT_OPTIMIZERS), help="optimizers"),
        lrs: str = typer.Option(",".join(f"{v:g}" for v in sweep.DEFAULT_LRS), help="rates"),
        starts: int = typer.Option(1000, help="random starts per block"),
        steps: int = typer.Option(500, help="steps per start"),
        seed: int = typer.Option(0, help="tuning seed; reports use the next --seeds seeds"),
        seeds: int = typer.Option(3, help="fresh seeds the chosen rate is reported on"),
        target: float = typer.Option(1e-4, help="success: f - f* <= target"),
        dim: int = typer.Option(None, help="dimension of d-dimensional functions"),
        engine: str = typer.Option("auto", help="auto, eager or compiled"),
        schedule: str = typer.Option(
            None, help="learning-rate schedule for every block (each --lrs rate its base)"
        ),
        warmup: int = typer.Option(None, help="warm-up steps of --schedule cosine or warmup"),
        scheduler: str = typer.Option(None, help="'local' or a Dask address tcp://host:8786"),
        out_path: Path = typer.Option(None, "--out", help="the table (.csv or .parquet)"),
        report: Path = typer.Option(None, help="folder for the heatmap, ECDF and HTML page"),
    ) -> None:
        """Tune each optimizer's rate per function on one seed, report it on fresh seeds."""
        from rich.progress import Progress

        if report is not None and report.exists() and not report.is_dir():
            raise DescentError(f"--report {report} is a file; give a folder")
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("bench", total=None)
            result = sweep.bench(
                _names(functions, "functions"),
                _names(optimizers, "optimizers"),
                _numbers(lrs),
                starts=starts,
                steps=steps,
                seed=seed,
                seeds=seeds,
                target=target,
                dim=dim,
                engine=engine,
                schedule=parse_schedule(schedule, warmup),
                scheduler=scheduler,
                out=out_path,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        table = Table(title=f"chosen rates, mean over seeds {seed + 1}..{seed + seeds}")
        for col in ("function", "optimizer", "lr", "success", "diverged", "median steps"):
            table.add_column(col, no_wrap=True)
        for row in result.chosen.itertuples():
            steps_text = (
                "—"
                if row.median_steps_to_target != row.median_steps_to_target
                else (f"{row.median_steps_to_target:.0f}")
            )
            table.add_row(
                row.function,
                row.optimizer,
                f"{row.lr:g}",
                f"{row.success_rate:.1%}",
                f"{row.diverged_fraction:.1%}",
                steps_text,
            )
        out.print(table)
        edges = result.edges()
        if edges:
            out.print(
                f"{len(edges)} chosen rate(s) lie at the edge of --lrs; a better one may lie "
                "beyond: " + "; ".join(edges)
            )
        if out_path is not None:
            out.print(f"table: {out_path}")
        if report is not None:
            out.print(f"report: {result.report(report)}")
