"""`descentlab fit` and `descentlab lr-find`: the training loop from the shell.

    descentlab fit quadratic --epochs 10 --lr 1e-5
    descentlab fit digits --model linear --epochs 30
    descentlab fit mnist --model mlp --hidden 64 --epochs 20 --batch-size 64 --lr 0.1
    descentlab fit mnist --three-vs-seven --model linear
    descentlab fit medmnist --path pathmnist.npz --model mlp
    descentlab fit mnist-idx --path ./mnist/
    descentlab lr-find mnist --model mlp
    descentlab fit mnist --model mlp --landscape pca --plot landscape.png
    descentlab fit mnist --model mlp --batch-size 0 --sharpness --plot sharpness.png

Defaults per dataset were measured over several seeds on the held-out split (see docs/training.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import typer

from ..errors import DescentError, UnknownNameError
from ..training import EarlyStopping, Learner, datasets, models

DATA = ("quadratic", "digits", "mnist", "medmnist", "mnist-idx")


@dataclass
class Recipe:
    """A dataset with the model, loss and settings that work for it."""

    data: object
    model: object
    loss: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int | None
    valid: float | None
    metrics: tuple[str, ...]
    params: int | None = None


def _quadratic(t, params):
    a, b, c = params
    return a * t**2 + b * t + c


def recipe(
    name: str, model: str | None, hidden: int, three_vs_seven: bool, path: Path | None, degree: int
) -> Recipe:
    if name not in DATA:
        raise UnknownNameError("dataset", name, DATA)
    if name == "quadratic":
        if model not in (None, "polynomial", "function"):
            raise DescentError(
                "the quadratic data takes --model function (seed style) or polynomial"
            )
        data = datasets.noisy_quadratic(seed=0)
        if model == "polynomial":
            return Recipe(data, models.Polynomial(degree), "mse", "gd", 1e-5, 10, None, None, ())
        return Recipe(data, _quadratic, "mse", "gd", 1e-5, 10, None, None, (), params=3)
    if name in ("medmnist", "mnist-idx") and path is None:
        raise DescentError(
            f"{name} needs --path (a .npz file for medmnist, a folder for mnist-idx)"
        )
    if name == "digits":
        data = datasets.digits()
    elif name == "mnist":
        data = datasets.mnist_sample(three_vs_seven=three_vs_seven)
    elif name == "medmnist":
        data = datasets.load_medmnist(path)
    else:
        data = datasets.mnist_idx(path)
    if three_vs_seven and name != "mnist":
        raise DescentError("--three-vs-seven applies to mnist only")
    n_in = data.x[0].numel()
    binary = three_vs_seven
    n_out = 1 if binary else data.n_classes
    kind = model or ("linear" if name == "digits" or binary else "mlp")
    valid = 0.2 if data.x_valid is None else None
    metrics = ("accuracy",)
    if kind == "linear":
        net = models.Linear(n_in, n_out)
        if binary:
            return Recipe(data, net, "binary", "sgd", 1.0, 20, 64, valid, metrics)
        lr = 0.1 if name == "digits" else 0.02
        return Recipe(
            data,
            net,
            "cross_entropy",
            "momentum",
            lr,
            30 if name == "digits" else 20,
            64,
            valid,
            metrics,
        )
    if kind == "mlp":
        net = models.MLP(n_in, hidden, n_out)
        return Recipe(
            data,
            net,
            "binary" if binary else "cross_entropy",
            "momentum",
            0.05,
            30,
            64,
            valid,
            metrics,
        )
    raise UnknownNameError("model", kind, ("linear", "mlp", "polynomial", "function"))


def diverged(learn) -> str | None:
    """Why a fit failed: its loss became nan or infinite (the Learner stopped it), or grew a
    hundredfold from its first step (not yet infinite, but running away); None when it did
    not."""
    losses = learn.history["loss"]
    if not losses:
        return None
    last = losses[-1]
    if not math.isfinite(last) or (learn.stop_reason and "loss became" in learn.stop_reason):
        return learn.stop_reason or f"the loss became {last}"
    if last > 100 * max(losses[0], 1e-12):
        return (
            f"the loss grew from {losses[0]:.4g} to {last:.4g} in {len(losses)} steps with "
            f"lr={learn.lr:g}: the learning rate is too high; try --lr {learn.lr / 10:g}"
        )
    return None


def register(app: typer.Typer, friendly) -> None:
    @app.command("fit")
    @friendly
    def fit_command(
        data: str = typer.Argument(..., help="quadratic, digits, mnist, medmnist or mnist-idx"),
        model: str = typer.Option(None, help="linear, mlp (or function/polynomial for quadratic)"),
        hidden: int = typer.Option(128, help="hidden units of the MLP"),
        degree: int = typer.Option(2, help="degree of --model polynomial"),
        epochs: int = typer.Option(None, help="passes over the training data"),
        batch_size: int = typer.Option(
            None, help="minibatch size (0: the whole data, the example's GD)"
        ),
        lr: float = typer.Option(None, help="learning rate"),
        optimizer: str = typer.Option(
            None, "--optimizer", "-O", help="gd, sgd, momentum, adam, ..."
        ),
        momentum: float = typer.Option(None, help="momentum for gd/sgd/momentum"),
        valid: float = typer.Option(None, help="fraction held out for validation"),
        seed: int = typer.Option(0, help="seed for initialization, split and shuffling"),
        patience: int = typer.Option(
            None, help="early stopping after this many epochs without progress"
        ),
        target: float = typer.Option(None, help="stop once the monitored loss reaches this"),
        three_vs_seven: bool = typer.Option(False, "--three-vs-seven", help="MNIST 3s vs 7s"),
        path: Path = typer.Option(None, help="a MedMNIST .npz file or a folder of MNIST IDX files"),
        plot: Path = typer.Option(None, help="figure: predictions by step (1-D data) or the loss"),
        animate: Path = typer.Option(None, help="animation of the predictions (.gif or .mp4)"),
        threads: int = typer.Option(None, help="CPU threads (default: 1 for small models)"),
        landscape: str = typer.Option(
            None,
            help="pca, random or interpolate: the loss on a plane (or line) through the "
            "weights, with the path projected on it; --plot draws it",
        ),
        resolution: int = typer.Option(None, help="grid points per direction of --landscape"),
        sharpness: bool = typer.Option(
            False,
            "--sharpness",
            help="measure the Hessian's largest eigenvalue about 20 times while fitting and "
            "print it against 2/lr; --plot draws it (unless --landscape is given)",
        ),
    ) -> None:
        """Fit a model with the seven-step loop and print the loss (or an epoch table)."""
        from ..plot._common import FIGURE_FORMATS, check_output
        from ..training.landscape import METHODS

        if landscape is not None and landscape not in METHODS:
            raise UnknownNameError("landscape", landscape, METHODS)
        if plot is not None:
            check_output(plot, FIGURE_FORMATS, "figure")
        if animate is not None:
            check_output(animate, {".gif", ".mp4"}, "animation")
        learn, r = learner_for(
            data,
            model=model,
            hidden=hidden,
            degree=degree,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            momentum=momentum,
            valid=valid,
            seed=seed,
            three_vs_seven=three_vs_seven,
            path=path,
            threads=threads,
        )
        stop = EarlyStopping(patience=patience) if patience else None
        epochs = epochs if epochs is not None else r.epochs
        steps = epochs * learn.steps_per_epoch
        every = max(1, steps // 20)  # about 20 kept weights and sharpness measurements
        learn.fit(
            epochs,
            stop=stop,
            target=target,
            keep_weights=every if landscape else None,
            sharpness=every if sharpness else None,
        )
        failed = diverged(learn)
        if failed:  # the loss ran away: say so and fail, rather than print it as a result
            typer.echo(f"error: {failed}", err=True)
            raise typer.Exit(1)
        result = learn.validate()
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "split")
        typer.echo(f"{result['split']}: {shown}")
        if sharpness:
            _echo_sharpness(learn)
        plane = None
        if landscape is not None:
            plane = learn.landscape(landscape, resolution=resolution)
            typer.echo(f"{plane.name}: {plane.note}")
        if plane is not None and plot is not None:
            plane.plot(path=plot)
            typer.echo(f"wrote {plot}")
            plot = None
        elif sharpness and plot is not None:
            learn.plot_sharpness(path=plot)
            typer.echo(f"wrote {plot}")
            plot = None
        if plot is not None or animate is not None:
            from .. import plot as pictures

            one_d = learn.x.ndim == 1 or learn.x.shape[1] == 1
            if plot is not None:
                if one_d and learn.history["params"]:
                    last = len(learn.history["params"]) - 1
                    pictures.preds(learn, steps=sorted({0, 1, 2, last}), path=plot)
                else:
                    pictures.loss(learn, path=plot)
                typer.echo(f"wrote {plot}")
            if animate is not None:
                pictures.animate(learn, animate)
                typer.echo(f"wrote {animate}")

    @app.command("lr-find")
    @friendly
    def lr_find_command(
        data: str = typer.Argument(..., help="quadratic, digits, mnist, medmnist or mnist-idx"),
        model: str = typer.Option(None, help="linear or mlp"),
        hidden: int = typer.Option(128, help="hidden units of the MLP"),
        batch_size: int = typer.Option(None, help="minibatch size"),
        optimizer: str = typer.Option(None, "--optimizer", "-O", help="optimizer"),
        seed: int = typer.Option(0, help="seed"),
        three_vs_seven: bool = typer.Option(False, "--three-vs-seven", help="MNIST 3s vs 7s"),
        path: Path = typer.Option(None, help="a MedMNIST .npz file or a folder of MNIST IDX files"),
        threads: int = typer.Option(None, help="CPU threads (default: 1 for small models)"),
    ) -> None:
        """Sweep the learning rate exponentially over one pass and suggest one."""
        learn, _ = learner_for(
            data,
            model=model,
            hidden=hidden,
            batch_size=batch_size,
            optimizer=optimizer,
            seed=seed,
            three_vs_seven=three_vs_seven,
            path=path,
            verbose=False,
            threads=threads,
        )
        found = learn.lr_find()
        step = max(1, len(found.lrs) // 12)
        for lr, loss in list(zip(found.lrs, found.losses, strict=True))[::step]:
            typer.echo(f"lr {lr:9.2e}  loss {loss:.4f}")
        typer.echo(f"suggested lr: {found.suggestion:.3g}")


def _echo_sharpness(learn) -> None:
    from ..training.sharpness import threshold

    rows = learn.history["sharpness"]
    limit, formula = threshold(learn.plan, rows[-1][2])
    typer.echo(f"{'step':>6}  {'sharpness':>10}  {formula:>10}")
    for step, value, lr in rows:
        typer.echo(f"{step:>6}  {value:>10.4g}  {threshold(learn.plan, lr)[0]:>10.4g}")
    last = rows[-1][1]
    typer.echo(
        f"sharpness {last:.4g} at the end: {last / limit:.0%} of the stability limit "
        f"{formula} = {limit:.4g}"
    )


def learner_for(
    data: str,
    *,
    model: str | None = None,
    hidden: int = 128,
    degree: int = 2,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    momentum: float | None = None,
    valid: float | None = None,
    seed: int = 0,
    three_vs_seven: bool = False,
    path: Path | None = None,
    verbose: bool = True,
    threads: int | None = None,
) -> tuple[Learner, Recipe]:
    """The Learner `descentlab fit DATA` builds, with the recipe's defaults for what is None."""
    r = recipe(data, model, hidden, three_vs_seven, path, degree)
    hyper = {} if momentum is None else {"momentum": momentum}
    size = r.batch_size if batch_size is None else (None if batch_size == 0 else batch_size)
    learn = Learner(
        r.model,
        r.data,
        loss=r.loss,
        optimizer=optimizer or r.optimizer,
        lr=lr or r.lr,
        params=r.params,
        batch_size=size,
        metrics=r.metrics,
        valid=valid if valid is not None else r.valid,
        seed=seed,
        verbose=verbose,
        threads=threads,
        **hyper,
    )
    return learn, r
