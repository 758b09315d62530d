"""Static figures from real runs, checked as a person would: not blank, the path where it
should be, the right panels and labels; bad requests refused without leaving files."""

import numpy as np
import pytest
from PIL import Image

import descentlab as dl

PATH_RGB = (0xFF, 0x5A, 0x36)  # the colour of a single run's path


@pytest.fixture(scope="module")
def walk():
    return dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=100)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def near(img, rgb, tol=40):
    return (np.abs(img - np.array(rgb)).sum(-1) < tol).sum()


def test_contour_is_not_blank_and_shows_the_path(walk, tmp_path):
    out = tmp_path / "c.png"
    fig = dl.plot.contour(walk, path=out)
    img = pixels(out)
    assert img.std() > 30  # a filled landscape, not an empty canvas
    assert near(img, PATH_RGB) > 150  # the path is drawn in its colour
    ax = fig.axes[0]
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert x0 <= -2.81 <= x1 and y0 <= 3.13 <= y1  # the minimum it reached is in view
    assert x0 <= -0.4 <= x1 and y0 <= -0.65 <= y1  # and so is the start


def test_race_has_a_legend_entry_per_optimizer(tmp_path):
    race = dl.race(
        "himmelblau",
        start=(-0.4, -0.65),
        optimizers=["gd", "momentum", "rmsprop", "adam"],
        steps=200,
    )
    fig = dl.plot.contour(race, path=tmp_path / "r.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:4] == ["gd", "momentum", "rmsprop", "adam"]


def test_basins_counts_match_the_run(tmp_path):
    grid = dl.descend("himmelblau", start=dl.grid(30), lr=0.01, steps=200)
    fig = dl.plot.basins(grid, path=tmp_path / "b.png")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for m in grid.summary()["minima"]:
        assert any(
            t.startswith(f"to minimum {m['index']}") and t.endswith(f"{m['count']:,}")
            for t in texts
        )
    img = pixels(tmp_path / "b.png")
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 5  # four basin colours and more


def test_lr_effects_names_too_low_good_bouncing_and_too_high(tmp_path):
    fig = dl.plot.lr_effects(
        lambda x: x**2, start=-1.5, lrs=[0.01, 0.3, 0.9, 1.05], path=tmp_path / "l.png"
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "lr = 0.01: too low, it crawls",
        "lr = 0.3: good",
        "lr = 0.9: high, it bounces",
        "lr = 1.05: too high, it diverges",
    ]


def test_divergence_is_drawn_not_hidden(tmp_path):
    run = dl.descend("himmelblau", dl.grid(10), lr=0.1, steps=50)
    fig = dl.plot.contour(run, path=tmp_path / "d.png")
    ax = fig.axes[0]
    assert any("diverged (100" in t.get_text() for t in ax.get_legend().get_texts())
    assert ax.get_xlim()[1] < 10  # the view is the landscape, not the blown-up coordinates
    assert near(pixels(tmp_path / "d.png"), (255, 0, 0), tol=60) > 100  # red crosses


@pytest.mark.parametrize(
    ("draw", "panels"),
    [
        (lambda w: dl.plot.params(w), 2),
        (lambda w: dl.plot.slices(w, step=5), 2),
        (lambda w: dl.plot.surface(w), 1),
    ],
)
def test_multi_panel_figures(walk, draw, panels, tmp_path):
    fig = draw(walk)
    assert len([a for a in fig.axes if a.get_label() != "<colorbar>"]) >= panels
    fig.savefig(tmp_path / "f.png")
    assert pixels(tmp_path / "f.png").std() > 20


def test_curve_of_seed_001(tmp_path):
    run = dl.descend(lambda x: x**2, start=1.8, lr=0.1, tol=0.01)
    dl.plot.curve(run, path=tmp_path / "c.png")
    assert pixels(tmp_path / "c.png").std() > 20


def test_training_figures(tmp_path):
    time, speed = dl.datasets.noisy_quadratic(seed=0)
    learn = dl.Learner(
        dl.models.Polynomial(2), data=(time, speed), loss="mse", lr=1e-5, verbose=False
    )
    learn.fit(10)
    fig = dl.plot.preds(learn, steps=[0, 1, 2, 3], path=tmp_path / "p.png")
    assert [a.get_title() for a in fig.axes] == [
        "after 0 steps",
        "after 1 step",
        "after 2 steps",
        "after 3 steps",
    ]
    fig = dl.plot.loss(learn, path=tmp_path / "l.png")
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), learn.history["loss"])


def test_montage_of_the_seed(tmp_path):
    fig = dl.plot.montage(
        ["sphere", "six_hump_camel", "himmelblau", "easom"], n=8, steps=30, path=tmp_path / "m.png"
    )
    titles = [a.get_title().split(" ·")[0] for a in fig.axes if a.get_title()]
    assert titles == ["sphere", "six_hump_camel", "himmelblau", "easom"]


def test_bad_requests(walk, tmp_path):
    one_d = dl.descend(lambda x: x**2, start=1.0, steps=3)
    with pytest.raises(dl.DescentError, match="contour needs a 2-D run"):
        dl.plot.contour(one_d)
    with pytest.raises(dl.DescentError, match="curve needs a 1-D run"):
        dl.plot.curve(walk)
    with pytest.raises(dl.DescentError, match="use one of"):
        dl.plot.contour(walk, path=tmp_path / "x.bmpx")
    with pytest.raises(dl.DescentError, match="does not exist"):
        dl.plot.contour(walk, path=tmp_path / "missing" / "x.png")
    with pytest.raises(dl.DescentError, match="race needs at least one optimizer"):
        dl.race("himmelblau", (0, 0), optimizers=[])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_loaded_callable_run_explains_why_it_cannot_be_drawn(tmp_path):
    run = dl.descend(lambda x, y: x**2 + y**2, start=(1.0, 1.0), steps=3)
    back = dl.load(run.save(tmp_path / "r.npz"))
    with pytest.raises(dl.DescentError, match="needs the function itself"):
        dl.plot.contour(back)
    dl.plot.params(back)  # needs only the recorded path
