"""Newton's method (`optimizer="newton"`): d2l's numbers, the closed form on quadratics, each
point as if alone, and what it does where the Hessian is singular or indefinite."""

import math

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.descent.newton import Newton, hessians


@pytest.mark.parametrize(
    ("f", "lr", "expected"),
    [
        # d2l 11.3.2: f = cosh(cx), c = 0.5, from x = 10, eta = 1: "epoch 10, x: 0.0"
        (lambda x: torch.cosh(0.5 * x), 1.0, 0.0),
        # d2l 11.3.2, non-convex f = x cos(cx), c = 0.15 pi: "epoch 10, x: 26.834133", and
        # with eta = 0.5: "epoch 10, x: 7.269860"
        (lambda x: x * torch.cos(0.15 * math.pi * x), 1.0, 26.834133),
        (lambda x: x * torch.cos(0.15 * math.pi * x), 0.5, 7.269860),
    ],
)
def test_d2l_newton_examples(f, lr, expected):
    run = dl.descend(f, start=10.0, optimizer="newton", lr=lr, steps=10, dtype="float64")
    assert f"{float(run.x):.6f}" == f"{expected:.6f}"


def test_one_step_solves_a_quadratic():
    # f = 1/2 x^T A x - b^T x: the minimum A^-1 b from anywhere in one step with lr 1
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -1.0], dtype=torch.float64)

    def f(x):
        return 0.5 * torch.einsum("...i,ij,...j->...", x, a, x) - x @ b

    run = dl.descend(
        f,
        start=dl.grid(4, bounds=(-5, 5)),
        dim=2,
        optimizer="newton",
        lr=1.0,
        steps=3,
        dtype="float64",
        record="all",
    )
    expected = torch.linalg.solve(a, b).numpy()
    np.testing.assert_allclose(run.path[1], np.broadcast_to(expected, (16, 2)), atol=1e-12)


def test_every_point_moves_as_if_alone():
    starts = torch.rand(12, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    starts = starts * 8 - 4
    batch = dl.descend(
        "himmelblau", start=starts.numpy(), optimizer="newton", lr=0.5, steps=15, dtype="float64"
    )
    f = dl.functions.get("himmelblau")
    for i in range(len(starts)):
        x = starts[i].clone().requires_grad_(True)  # a (2,) parameter in a plain torch loop
        opt = Newton([x], lr=0.5, objective=f)
        for _ in range(15):
            opt.zero_grad()
            f(x).backward()
            opt.step()
        np.testing.assert_allclose(batch.x[i], x.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_hessians_against_finite_differences():
    f = dl.functions.get("rosenbrock")
    rows = torch.tensor([[-1.2, 1.0], [0.5, 0.3], [1.0, 1.0]], dtype=torch.float64)
    h = hessians(f, rows)
    eps = 1e-5
    for r, point in enumerate(rows):
        for j in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[j] = eps
            gp = torch.func.grad(lambda v: f(v))(point + e)
            gm = torch.func.grad(lambda v: f(v))(point - e)
            np.testing.assert_allclose(h[r, :, j], (gp - gm) / (2 * eps), rtol=1e-6, atol=1e-5)


def test_singular_and_indefinite_hessians():
    # flat in y: the pseudo-inverse's step does not move along y
    run = dl.descend("x**2 + 0*y", start=(3.0, 5.0), optimizer="newton", steps=1, dtype="float64")
    np.testing.assert_allclose(run.x, [0.0, 5.0], atol=1e-12)
    # a saddle: the plain Newton step goes to it, as the method says (documented)
    run = dl.descend("x**2 - y**2", start=(1.0, 1.0), optimizer="newton", steps=1, dtype="float64")
    np.testing.assert_allclose(run.x, [0.0, 0.0], atol=1e-12)


def test_a_function_without_a_hessian_is_refused_in_one_line():
    with pytest.raises(dl.DescentError, match="newton needs f's Hessian") as caught:
        # f computed outside torch (its gradient by central differences)
        dl.descend(
            lambda x: torch.from_numpy(np.sin(x.detach().numpy())),
            start=1.0,
            optimizer="newton",
            grad="central",
            steps=3,
            dtype="float64",
        )
    assert "\n" not in str(caught.value)


def test_newton_in_race_and_the_cli():
    r = dl.race("booth", start=(0.0, 0.0), optimizers=["gd", "newton"], steps=5)
    np.testing.assert_allclose(r["newton"].x, [1.0, 3.0], atol=1e-5)  # a quadratic: one step
    assert not r["newton"].meta["kernel"]
