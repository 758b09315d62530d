"""Sharpness: the Hessian's largest eigenvalue by Lanczos on Hessian-vector products, checked
against numpy's eigenvalues of the exact Hessian, and measured during a fit."""

import numpy as np
import pytest
import torch
from torch import nn

import descentlab as dl
from descentlab.training.functional import Weights, loss_of_weights
from descentlab.training.sharpness import hvp, threshold, top_eigenvalue


def linear_regression(n=80, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen) * torch.linspace(0.2, 3, d)
    y = x.sum(1) + torch.randn(n, generator=gen)
    return dl.Learner(nn.Sequential(nn.Linear(d, 1, bias=False)), (x, y), lr=0.01, verbose=False)


def test_the_top_eigenvalue_of_linear_regression_is_numpys_of_2_over_n_xtx():
    learn = linear_regression()
    x = learn.x.double().numpy()
    want = np.linalg.eigvalsh(2 / len(x) * x.T @ x).max()
    got = learn.sharpness(dtype=torch.float64, tol=1e-10)
    assert got == pytest.approx(want, rel=1e-8)


def test_lanczos_finds_the_largest_not_the_largest_in_magnitude():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=torch.float64))
    eigen = torch.cat(
        [
            torch.tensor([-9.0, 5.0], dtype=torch.float64),
            torch.rand(38, generator=gen, dtype=torch.float64),
        ]
    )
    a = q @ torch.diag(eigen) @ q.T
    found = top_eigenvalue(lambda v: a @ v, 40, tol=1e-10, dtype=torch.float64)
    assert found.value == pytest.approx(5.0, rel=1e-9)
    assert found.products <= 40
    assert torch.allclose(a @ found.vector, 5.0 * found.vector, atol=1e-8)
    again = top_eigenvalue(lambda v: a @ v, 40, tol=1e-10, dtype=torch.float64, start=found.vector)
    assert again.value == pytest.approx(5.0, rel=1e-9) and again.products <= 2


def test_hessian_vector_products_match_the_hessian_of_a_network():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (30,))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    f = loss_of_weights(model, nn.functional.cross_entropy, x, y)
    w = Weights(model).flat(model).double()
    hessian = torch.autograd.functional.hessian(f, w)
    v = torch.randn(len(w), generator=gen, dtype=torch.float64)
    assert torch.allclose(hvp(f, w)(v), hessian @ v, rtol=1e-10, atol=1e-12)
    value = top_eigenvalue(hvp(f, w), len(w), tol=1e-9, dtype=torch.float64).value
    assert value == pytest.approx(float(torch.linalg.eigvalsh(hessian).max()), rel=1e-7)


def test_sharpness_measured_while_fitting_and_drawn_against_2_over_lr():
    learn = linear_regression()
    learn.fit(5, sharpness=2)
    rows = learn.history["sharpness"]
    assert [r[0] for r in rows] == [0, 2, 4, 5]
    assert all(r[2] == 0.01 for r in rows)
    # a linear model's Hessian does not change with its weights
    assert np.allclose([r[1] for r in rows], rows[0][1], rtol=1e-4)
    fig = learn.plot_sharpness()
    ax = fig.axes[0]
    measured, limit = ax.get_lines()[:2]
    assert np.allclose(measured.get_ydata(), [r[1] for r in rows])
    assert np.allclose(limit.get_ydata(), 2 / 0.01)
    assert "2/η" in ax.get_title()


def test_the_stability_limit_of_each_optimizer():
    gd = dl.optimizers.resolve("gd", 0.1)
    heavy = dl.optimizers.resolve("momentum", 0.1, momentum=0.9)
    nesterov = dl.optimizers.resolve("nesterov", 0.1, momentum=0.9)
    assert threshold(gd, 0.1)[0] == pytest.approx(20)
    assert threshold(heavy, 0.1)[0] == pytest.approx(38)
    assert threshold(nesterov, 0.1)[0] == pytest.approx(3.8 / (0.1 * 2.8))


def test_gradient_descent_diverges_above_the_limit_on_a_quadratic():
    # the limit's meaning, checked where it is exact: f = λ/2 x², stable iff λ < 2/lr
    for lam, lr, stable in ((10.0, 0.19, True), (10.0, 0.21, False)):
        run = dl.descend(f"{lam / 2} * x**2", start=1.0, lr=lr, steps=300, dtype="float64")
        assert (abs(run.x) < 1) == stable


def test_sharpness_errors_are_one_line():
    learn = linear_regression()
    with pytest.raises(dl.DescentError, match="no sharpness was measured"):
        learn.plot_sharpness()
    with pytest.raises(dl.DescentError, match="sharpness every k steps needs"):
        learn.fit(1, sharpness=0)
    with pytest.raises(dl.DescentError, match="no validation split"):
        learn.sharpness("valid")
