"""Pictures where learners are: every plotting call returns a figure that shows in Jupyter
(`_repr_png_`), no module picks the user's backend or leaves figures in pyplot, the objects
people hold draw themselves (`run.plot()`, `race.animate()`, `learn.plot_loss()`, ...), and
each shows as a table with a picture (`_repr_html_`)."""

import base64
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import descentlab as dl
from descentlab.plot import Animation, Figure


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def has_colour(image: np.ndarray, hex_colour: str, tol: int = 40) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(image.astype(int) - rgb).sum(-1) < tol).any())


def inline_image(html: str) -> np.ndarray | None:
    found = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    return pixels(base64.b64decode(found.group(1))) if found else None


@pytest.fixture(scope="module")
def walk():
    return dl.descend("himmelblau", (-0.4, -0.65), lr=0.01, steps=100)


BACKEND = r"""
import matplotlib
import descentlab as dl
run = dl.descend("himmelblau", (-0.4, -0.65), lr=0.01, steps=30)
run.plot(); run.animate(fps=5, seconds=1).to_html(); dl.plot.params(run)
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), plt.get_fignums())
"""


def test_no_module_picks_the_backend_or_leaves_figures_in_pyplot():
    # a user's backend (here svg) stays theirs, and pyplot holds none of descentlab's figures
    # (before, plot.static called matplotlib.use("Agg") on import, and inline display died)
    done = subprocess.run(
        [sys.executable, "-c", BACKEND],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "svg"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["svg", "[]"]


def test_a_figure_shows_in_a_notebook_as_a_picture_of_the_walk(walk):
    fig = walk.plot()
    assert isinstance(fig, Figure)
    image = pixels(fig._repr_png_())
    assert image.shape[1] > 400 and has_colour(image, "#ff5a36")  # the path's colour
    assert len(fig.axes) == 2  # the map and its colour bar


def test_run_plot_draws_what_fits_the_dimension():
    line = dl.descend(lambda x: x**2, start=1.5, lr=0.1, steps=10)
    assert len(line.plot().axes) == 2  # the curve with the walk on it, and its step colours
    three = dl.descend("sphere", (1.0, -1.0, 0.5), dim=3, lr=0.1, steps=10)
    assert len(three.plot().axes) == 3  # each coordinate against the step
    assert len(dl.descend("himmelblau", (1.0, 1.0), steps=5).plot3d().axes) == 1


def test_a_trajectory_shows_as_a_table_with_its_walk(walk):
    html = walk._repr_html_()
    for text in ("Trajectory", "himmelblau", "gd (lr=0.01)", "1 converged", "minima reached"):
        assert text in html, text
    image = inline_image(html)
    assert image is not None and has_colour(image, "#ff5a36")
    grid = dl.descend("himmelblau", dl.grid(10), lr=0.01, steps=200, tol=1e-3)
    assert "converged" in grid._repr_html_()
    assert inline_image(dl.descend("sphere", (1.0, 1.0, 1.0), dim=3, steps=3)._repr_html_()) is None


def test_an_animation_is_a_player_in_a_notebook_and_a_file_on_request(walk, tmp_path):
    player = walk.animate(fps=5, seconds=2)
    assert isinstance(player, Animation) and player.frames == 10
    html = player._repr_html_()
    assert "animation" in html and html.count("data:image/png;base64") == 10
    path = player.save(tmp_path / "walk.gif")
    assert Image.open(path).n_frames == 10
    assert walk.animate(tmp_path / "again.gif", fps=5, seconds=2) == (tmp_path / "again.gif", 10)


def test_a_race_draws_every_entrant_and_shows_as_a_table():
    race = dl.race("himmelblau", (-0.4, -0.65), ["gd", "adam"], lr=0.01, steps=60)
    image = pixels(race.plot()._repr_png_())
    assert has_colour(image, "#e6194b") and has_colour(image, "#3cb44b")  # one colour each
    html = race._repr_html_()
    assert "Race on himmelblau" in html and "gd" in html and "adam" in html
    assert inline_image(html) is not None
    assert race.animate(fps=4, seconds=1).frames == 4


def test_a_learner_draws_its_loss_and_predictions_and_its_rate_finder():
    time, speed = dl.datasets.noisy_quadratic(seed=0)

    def f(t, params):
        a, b, c = params
        return a * t**2 + b * t + c

    learn = dl.Learner(f, params=3, data=(time, speed), loss="mse", lr=1e-5, verbose=False)
    learn.fit(5)
    assert len(learn.plot_loss().axes) == 1 and len(learn.plot_preds([0, 5]).axes) == 2
    html = learn._repr_html_()
    assert "Learner" in html and "mse" in html and inline_image(html) is not None
    found = dl.Learner(f, params=3, data=(time, speed), loss="mse", verbose=False).lr_find()
    fig = found.plot()
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    marked = [line for line in ax.get_lines() if list(line.get_xdata()) == [found.suggestion] * 2]
    assert marked, "the suggested rate is marked"
    assert pixels(found._repr_png_()).shape[1] > 300


def test_a_sweep_draws_itself_and_shows_its_chosen_rates(tmp_path):
    result = dl.bench(["sphere"], ["gd", "adam"], [0.01, 0.1], starts=16, steps=60, seeds=1)
    assert len(result.plot().axes) == 1  # one function: one ECDF panel
    assert len(result.plot("success").axes) == 2  # the heatmap and its colour bar
    assert result.plot(path=tmp_path / "e.png") is not None and (tmp_path / "e.png").is_file()
    with pytest.raises(dl.DescentError, match="kind must be 'ecdf' or 'success'"):
        result.plot("ecfd")
    html = result._repr_html_()
    assert "sphere / gd" in html and "sphere / adam" in html and "success" in html


def test_an_objective_shows_its_facts():
    html = dl.functions.get("himmelblau")._repr_html_()
    assert "Objective himmelblau" in html and "(3, 2)" in html and "f*" in html


def test_the_plot_package_is_listed_on_the_module():
    assert "plot" in dir(dl) and "animate" in dir(dl)
