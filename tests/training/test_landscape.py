"""Training seen as a descent: kept weights, planes through them, and the honest residual.

Each plane is checked against an independent computation: the exact quadratic of a linear
regression written out with numpy, numpy's SVD of the centred path, the model itself run at
the weights of a grid point, a plain autograd loop on the plane's coordinates.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import descentlab as dl
from descentlab.training.callbacks import KeepWeights
from descentlab.training.functional import PlaneLoss, Weights
from descentlab.training.plane import filter_norms


def regression(n=64, d=4, seed=0, bias=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = x @ torch.arange(1.0, d + 1) + 0.3 * torch.randn(n, generator=gen) + 0.5
    model = nn.Sequential(nn.Linear(d, 1, bias=bias))
    return dl.Learner(model, (x, y), loss="mse", lr=0.05, verbose=False)


@pytest.fixture(scope="module")
def fitted():
    learn = regression()
    learn.fit(25, keep_weights=1)
    return learn


@pytest.fixture(scope="module")
def mlp():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 12, generator=gen)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    learn = dl.Learner(
        dl.models.MLP(12, 16, 3), (x, y), loss="cross_entropy", lr=0.3, valid=0.25, verbose=False
    )
    learn.fit(12, keep_weights=2)
    return learn


def test_keep_weights_keeps_every_kth_step_the_start_and_the_end():
    learn = regression()
    before = parameters_to_vector(learn.model.parameters()).detach().clone()
    learn.fit(7, keep_weights=3)
    assert learn.weights_at == [0, 3, 6, 7]
    assert learn.weights.shape == (4, 5)
    assert torch.equal(learn.weights[0], before)
    assert torch.equal(learn.weights[-1], parameters_to_vector(learn.model.parameters()))
    learn.fit(2, keep_weights=3)  # a second fit goes on from where the first ended
    assert learn.weights_at == [0, 3, 6, 7, 9]
    learn.lr_find(num=10)  # the LR finder never keeps any
    assert learn.weights_at == [0, 3, 6, 7, 9]


def test_keep_weights_is_off_by_default_and_refused_when_it_would_not_fit():
    learn = regression()
    learn.fit(2)
    assert learn.weights_at == []
    with pytest.raises(dl.DescentError, match="no weights were kept: fit with keep_weights"):
        _ = learn.weights
    with pytest.raises(dl.MemoryNeedError, match=r"copies of .* use keep_weights=\d+ or more"):
        KeepWeights(1, max_memory=20 * 5 * 4).check(learn, 1000)
    with pytest.raises(dl.DescentError, match="keep_weights must be a whole number"):
        learn.fit(1, keep_weights=0)


def test_a_regression_plane_is_the_exact_quadratic_in_float64(fitted):
    plane = fitted.landscape("pca", resolution=9, dtype=torch.float64)
    a = np.c_[fitted.x.double().numpy(), np.ones(len(fitted.x))]  # [x, 1] @ [w, b]
    y = fitted.y.double().numpy()
    c = plane.center.numpy()
    u, v = (d.numpy() for d in plane.directions)
    for i, alpha in enumerate(plane.alphas):
        for j, beta in enumerate(plane.betas):
            theta = c + alpha * u + beta * v
            exact = np.mean((a @ theta - y) ** 2)
            assert plane.loss[i, j] == pytest.approx(exact, rel=1e-10, abs=1e-12)


def test_pca_directions_and_shares_are_numpys_svd_of_the_centred_path(fitted):
    plane = fitted.landscape("pca", dtype=torch.float64)
    rows = fitted.weights.double().numpy()
    final = parameters_to_vector(fitted.model.parameters()).double().detach().numpy()
    moved = rows - final
    _, s, vh = np.linalg.svd(moved - moved.mean(0), full_matrices=False)
    for got, want in zip(plane.directions, vh[:2], strict=True):
        assert abs(float(got.numpy() @ want)) == pytest.approx(1.0, abs=1e-10)
    assert plane.explained == pytest.approx(tuple(s[:2] ** 2 / (s**2).sum()), rel=1e-10)
    assert torch.equal(plane.center, torch.tensor(final))
    assert "explains" in plane.note


def test_the_grid_is_the_models_own_loss_at_each_grid_points_weights(mlp):
    plane = mlp.landscape("pca", resolution=7)
    assert plane.loss.shape == (7, 7)
    model = dl.models.MLP(12, 16, 3)
    for i, j in [(0, 0), (3, 5), (6, 2)]:
        w = (
            plane.center
            + plane.alphas[i] * plane.directions[0]
            + plane.betas[j] * plane.directions[1]
        )
        vector_to_parameters(w, model.parameters())
        with torch.no_grad():
            want = nn.functional.cross_entropy(model(mlp.x), mlp.y)
        assert plane.loss[i, j] == pytest.approx(float(want), rel=1e-5)


def test_the_first_layer_shortcut_equals_the_whole_model_on_any_plane(mlp):
    layout = Weights(mlp.model)
    gen = torch.Generator().manual_seed(3)
    dirs = torch.randn(2, layout.total, generator=gen, dtype=torch.float64)
    center = layout.flat(mlp.model).double()
    plane = PlaneLoss(mlp.model, mlp.loss_fn, mlp.x, mlp.y, center, dirs, torch.float64)
    assert plane._shortcut is not None
    coords = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    direct = plane.at_weights(center + coords @ dirs)
    assert torch.allclose(plane(coords), direct, rtol=1e-12, atol=0)


def test_random_directions_are_filter_normalized_and_leave_biases_out(mlp):
    plane = mlp.landscape("random", resolution=5, seed=4)
    layout = Weights(mlp.model)
    weights = filter_norms(layout, plane.center)
    for direction in plane.directions:
        norms = filter_norms(layout, direction)
        for name, want in weights.items():
            if name.endswith("bias"):
                assert torch.count_nonzero(norms[name]) == 0
            else:
                assert torch.allclose(norms[name], want, rtol=1e-5)
    again = mlp.landscape("random", resolution=5, seed=4)
    assert torch.equal(again.directions[0], plane.directions[0])  # seeded
    with_biases = mlp.landscape("random", resolution=5, seed=4, include_biases=True)
    norms = filter_norms(layout, with_biases.directions[0])
    assert torch.allclose(norms["1.bias"], weights["1.bias"], rtol=1e-5)


def test_a_path_that_moves_in_a_plane_has_zero_residual(mlp):
    # every step of a model with two weights lies in the plane of its two weights
    learn = dl.Learner(
        nn.Sequential(nn.Linear(1, 1)),
        (torch.linspace(-1, 1, 30)[:, None], 3 * torch.linspace(-1, 1, 30) - 1),
        loss="mse",
        lr=0.1,
        verbose=False,
    )
    learn.fit(15, keep_weights=1)
    projected = learn.landscape("pca", dtype=torch.float64).paths[0]
    assert projected.distance.max() < 1e-12
    assert np.allclose(projected.plane_loss, projected.true_loss, rtol=1e-6)
    # and a path built inside a plane of a larger model
    layout = Weights(mlp.model)
    gen = torch.Generator().manual_seed(5)
    u, v = torch.randn(2, layout.total, generator=gen)
    start = layout.flat(mlp.model).clone()
    rows = [start + math.cos(t) * u + t * v for t in np.linspace(0, 2, 8)]
    twin = dl.Learner(dl.models.MLP(12, 16, 3), (mlp.x, mlp.y), loss="cross_entropy", verbose=False)
    twin.fit(1)
    twin._kept, twin.weights_at = rows, list(range(8))
    vector_to_parameters(rows[-1], twin.model.parameters())
    projected = twin.landscape("pca").paths[0]
    assert projected.distance.max() < 1e-5 * float(u.norm())
    assert np.allclose(projected.plane_loss, projected.true_loss, rtol=1e-4)


def test_several_trainings_share_one_plane_each_with_its_residual():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(120, 6, generator=gen)
    y = (x[:, 0] > x[:, 1]).long()
    learns = []
    for optimizer, lr in (("gd", 0.5), ("adam", 0.01)):
        learn = dl.Learner(
            dl.models.MLP(6, 8, 2),
            (x, y),
            loss="cross_entropy",
            optimizer=optimizer,
            lr=lr,
            verbose=False,
        )
        learn.fit(10, keep_weights=1)
        learns.append(learn)
    plane = dl.landscape(learns, directions="pca", resolution=6)
    assert [p.label for p in plane.paths] == ["gd lr=0.5", "adam lr=0.01"]
    first, second = plane.paths
    assert np.allclose(first.coords[0], second.coords[0])  # the same initial weights
    assert not np.allclose(first.coords[-1], second.coords[-1])
    rows = torch.cat([learn.weights for learn in learns]).double()
    assert torch.allclose(plane.center.double(), rows.mean(0), atol=1e-6)  # the mean of both
    for projected, learn in zip(plane.paths, learns, strict=True):
        assert projected.true_loss[-1] == pytest.approx(learn.validate()["loss"], rel=1e-5)
    race = plane.walks()
    assert race.labels == ["gd lr=0.5", "adam lr=0.01"]
    assert np.array_equal(race["gd lr=0.5"].path[:, 0], first.coords)


def test_the_line_from_the_initial_to_the_final_weights(mlp):
    line = mlp.landscape("interpolate")
    assert line.dim == 1 and line.loss.shape == (61,) and line.betas is None
    assert line.alphas[0] == -0.5 and line.alphas[-1] == 1.5
    model = dl.models.MLP(12, 16, 3)
    for at, weights in ((0.0, mlp.weights[0]), (1.0, Weights(mlp.model).flat(mlp.model))):
        vector_to_parameters(weights, model.parameters())
        with torch.no_grad():
            train = nn.functional.cross_entropy(model(mlp.x), mlp.y)
            valid = nn.functional.cross_entropy(model(mlp.x_valid), mlp.y_valid)
        i = int(np.argmin(np.abs(line.alphas - at)))
        assert line.alphas[i] == pytest.approx(at)
        assert line.loss[i] == pytest.approx(float(train), rel=1e-5)
        assert line.valid_loss[i] == pytest.approx(float(valid), rel=1e-5)


def test_a_descent_on_the_plane_is_gradient_descent_on_its_coordinates(mlp):
    plane = mlp.landscape("pca", resolution=5)
    run = dl.descend(plane, start=plane.start, lr=0.05, steps=6)
    assert run.meta["engine"] == "eager"
    model = dl.models.MLP(12, 16, 3)
    c = torch.tensor(plane.start, dtype=torch.float32)
    d = torch.stack(plane.directions)
    for k in range(7):
        assert np.allclose(run.path[k, 0], c.numpy(), atol=1e-5)
        vector_to_parameters(plane.center + c @ d, model.parameters())
        loss = nn.functional.cross_entropy(model(mlp.x), mlp.y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        c = c - 0.05 * (d @ torch.cat([g.reshape(-1) for g in grads]))  # the chain rule by hand
    with pytest.raises(dl.DescentError, match="network's loss on a plane"):
        dl.descend(plane, start=plane.start, steps=2, engine="compiled")


def test_bad_landscapes_are_one_line_errors(mlp):
    fresh = dl.Learner(
        dl.models.MLP(12, 16, 3), (mlp.x, mlp.y), loss="cross_entropy", verbose=False
    )
    with pytest.raises(dl.DescentError, match="not been fitted yet"):
        fresh.landscape("random")
    fresh.fit(1)
    with pytest.raises(dl.DescentError, match="none were: fit with keep_weights"):
        fresh.landscape("pca")
    with pytest.raises(dl.DescentError, match="direction 2 has 5 numbers but the model has"):
        mlp.landscape([torch.ones(Weights(mlp.model).total), torch.ones(5)])
    with pytest.raises(dl.DescentError, match="parallel"):
        ones = torch.ones(Weights(mlp.model).total)
        mlp.landscape([ones, 2 * ones])
    with pytest.raises(dl.UnknownNameError, match="did you mean 'pca'"):
        mlp.landscape("pcaa")
    for span in (-1, 0, (1, 0), (0, math.inf), "wide", ((0, 1), (2, 1))):
        with pytest.raises(dl.DescentError, match="span must be"):
            mlp.landscape("random", span=span)
    for resolution in (1, 402, 2.5, True):
        with pytest.raises(dl.DescentError, match="resolution must be a whole number"):
            mlp.landscape("random", resolution=resolution)
    with pytest.raises(dl.MemoryNeedError, match="use a resolution of at most"):
        mlp.landscape("random", resolution=400, max_memory=1e6)
    with pytest.raises(dl.DescentError, match="no parameters; there is nothing to train"):
        dl.Learner(nn.Sequential(nn.ReLU()), (mlp.x, mlp.y), verbose=False)
    with pytest.raises(dl.DescentError, match="give one Learner"):
        dl.landscape([mlp, mlp], "interpolate")


def test_the_plane_is_an_objective_every_picture_takes(mlp, tmp_path):
    plane = mlp.landscape("pca", resolution=9)
    _, _, z = plane.surface(plane.view)
    assert np.array_equal(z, plane.loss.T)  # pictures draw the grid that was computed
    fig = plane.plot()
    contour = fig.axes[0]
    residual = next(a for a in fig.axes if a.get_title() == "is the plane telling the truth?")
    drawn = contour.get_lines()[0]
    assert np.allclose(drawn.get_xdata(), plane.paths[0].coords[:, 0])
    assert f"{plane.explained[0]:.1%}" in contour.get_xlabel()
    assert plane.note in [t.get_text() for t in fig.texts]
    assert np.allclose(residual.get_lines()[0].get_ydata(), plane.paths[0].true_loss)
    assert np.allclose(residual.get_lines()[1].get_ydata(), plane.paths[0].plane_loss)
    line = mlp.landscape("interpolate").plot(path=tmp_path / "line.png")
    assert (tmp_path / "line.png").stat().st_size > 10_000
    assert [t.get_text() for t in line.axes[0].get_legend().get_texts()][:2] == [
        "train loss",
        "valid loss",
    ]
    run = dl.descend(plane, start=plane.start, lr=0.05, steps=5)
    dl.plot.contour(run, path=tmp_path / "walk.png")
    assert "slice of the" in plane.formula


def test_the_explorer_races_optimizers_on_the_networks_plane(mlp):
    from descentlab.explorer.compute import unpack

    plane = mlp.landscape("pca", resolution=9)
    widget = dl.explore(plane, ["gd", "adam"], lr=[0.5, 0.05], steps=8)
    assert widget.start == [list(plane.start)]  # from where the training began
    sent = []
    widget.send = lambda msg, buffers=None: sent.append(msg)
    widget._on_message(widget, {"type": "run", "id": 1, "request": widget.request()}, [])
    reply = sent[0]["reply"]
    assert "slice of the" in reply["f"]["formula"]
    surface = reply["f"]["surface"]
    # the map is the plane's own grid (float32 on the wire)
    assert np.allclose(unpack(surface["z"]), plane.loss.T, rtol=1e-6)
    for run, optimizer, lr in zip(reply["runs"], ["gd", "adam"], [0.5, 0.05], strict=True):
        again = dl.descend(plane, start=[plane.start], optimizer=optimizer, lr=lr, steps=8)
        assert np.allclose(unpack(run["path"]), again.path, atol=1e-6)
    with pytest.raises(dl.DescentError, match="two variables"):
        dl.explore(mlp.landscape("interpolate"))


def test_directions_given_as_state_dicts_and_the_3d_and_animated_views(mlp, tmp_path):
    gen = torch.Generator().manual_seed(6)
    given = [
        {n: torch.randn(p.shape, generator=gen) for n, p in mlp.model.named_parameters()}
        for _ in range(2)
    ]
    plane = mlp.landscape(given, resolution=5, span=0.5)
    layout = Weights(mlp.model)
    for got, state in zip(plane.directions, given, strict=True):
        assert torch.equal(got, layout.flat(state))
    assert plane.alphas[0] == -0.5 and plane.betas[-1] == 0.5
    with pytest.raises(dl.DescentError, match="lacks the model's parameter '1.weight'"):
        mlp.landscape([{"x": torch.ones(1)}, given[1]])
    with pytest.raises(dl.DescentError, match=r"1.weight has shape \(2, 2\)"):
        mlp.landscape([{**given[0], "1.weight": torch.ones(2, 2)}, given[1]])
    pca = mlp.landscape("pca", resolution=7)
    fig = pca.plot3d()  # matplotlib's 3-D figure without a path
    assert "PCA plane (" in fig.axes[0].get_title() and "of path)" in fig.axes[0].get_title()
    written, frames = pca.animate(tmp_path / "walk.gif")
    from PIL import Image

    assert frames == len(mlp.weights_at) == Image.open(written).n_frames


def test_normalization_layers_get_no_random_direction_and_are_evaluated_in_eval_mode():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(100, 6, generator=gen)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    learn = dl.Learner(model, (x, y), loss="cross_entropy", lr=0.1, verbose=False)
    learn.fit(4, keep_weights=1)
    plane = learn.landscape("random", resolution=5)
    norms = filter_norms(Weights(model), plane.directions[1])
    assert [name for name, n in norms.items() if bool(n.any())] == ["0.weight", "3.weight"]
    assert model.training  # put back as it was
    model.eval()
    with torch.no_grad():
        here = float(nn.functional.cross_entropy(model(x), y))
    assert plane.loss[2, 2] == pytest.approx(here, rel=1e-5)  # the grid's centre
