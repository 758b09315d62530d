"""User callables in every style, and the errors for the ones that cannot work."""

import math
import warnings

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.problem.objective import adapt_callable

HIMMELBLAU_MIN = (-2.805118, 3.131312)


def himmelblau_xy(x, y):
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


@pytest.mark.parametrize(
    "f",
    [
        himmelblau_xy,  # one argument per coordinate
        lambda p: himmelblau_xy(p[..., 0], p[..., 1]),  # over a (..., d) tensor
        lambda p: himmelblau_xy(p[0], p[1]),  # one point (d,), vectorised with vmap
    ],
    ids=["per-coordinate", "batch", "per-point"],
)
def test_every_call_style_gives_the_registry_trajectory(f):
    starts = dl.grid(7, bounds=((-4, 4), (-4, 4)))
    ours = dl.descend(f, starts, lr=0.01, steps=50)
    ref = dl.descend("himmelblau", starts, lr=0.01, steps=50)
    np.testing.assert_allclose(ours.path, ref.path, rtol=1e-6, atol=1e-6)


def test_scalar_style_one_dimensional_function():
    for starts, dim in (([0.0, 1.0, 5.0], 1), ([[0.0], [1.0], [5.0]], None)):
        run = dl.descend(lambda x: (x - 2) ** 2, start=starts, dim=dim, lr=0.1, steps=200)
        assert run.x.shape == (3, 1)
        np.testing.assert_allclose(run.x[:, 0], 2.0, atol=1e-4)


def test_a_sequence_is_one_point_for_a_callable_without_dim():
    run = dl.descend(lambda p: ((p - 2) ** 2).sum(-1), start=[0.0, 1.0, 5.0], lr=0.1, steps=5)
    assert run.x.shape == (3,) and run.single


def test_control_flow_falls_back_to_a_loop_with_a_warning():
    def piecewise(x):
        return x**2 if x > 0 else -x  # Python `if` on a value: no batching possible

    with pytest.warns(UserWarning, match="point by point"):
        run = dl.descend(piecewise, start=[1.0, -1.0], dim=1, lr=0.1, steps=3)
    # x>0: x *= 0.8 per step; x<0: x += 0.1 per step
    np.testing.assert_allclose(run.x[:, 0], [0.8**3, -0.7], rtol=1e-6)


def test_function_returning_a_float_is_refused():
    with pytest.raises(dl.ObjectiveError, match="returned float, not a torch tensor"):
        dl.descend(lambda x: math.sin(float(x)), start=1.0)
    with pytest.raises(dl.ObjectiveError, match="returned float, not a torch tensor"):
        dl.descend(lambda x: 3.0, start=(1.0, 2.0))


def test_function_detached_from_x_is_refused():
    with pytest.raises(dl.ObjectiveError, match="no gradient"):
        dl.descend(lambda x: torch.tensor(math.sin(x.item())), start=1.0)


def test_function_returning_one_value_per_coordinate_is_refused():
    with pytest.raises(dl.ObjectiveError, match=r"one value per point.*sum\(-1\)"):
        dl.descend(lambda x: x**2, start=(1.0, 2.0))


def test_function_without_gradient_is_refused():
    with pytest.raises(dl.ObjectiveError, match="no gradient"):
        dl.descend(lambda x: torch.ones(x.shape[:-1]), start=(1.0, 2.0))


def test_function_mixing_points_is_refused():
    with pytest.raises(dl.ObjectiveError, match="mixes the points"):
        dl.descend(lambda p: ((p - p.mean(0)) ** 2).sum(-1), start=[(1.0, 2.0), (3.0, 4.0)])


def test_argument_count_must_match_the_start():
    with pytest.raises(dl.StartError, match="3 coordinates per point .* dimension 2"):
        dl.descend(himmelblau_xy, start=(1.0, 2.0, 3.0))
    with pytest.raises(dl.ObjectiveError, match="takes 2 arguments"):
        adapt_callable(himmelblau_xy, 3, torch.zeros(3))


def test_numpy_function_works_with_central_differences():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = dl.descend(
            lambda x: torch.as_tensor(np.cos(np.asarray(x)) + 0.0),
            start=0.5,
            lr=0.5,
            steps=100,
            grad="central",
        )
    assert float(run.x) == pytest.approx(math.pi, abs=1e-3)


def test_objective_instance_is_used_as_is():
    obj = dl.Objective(lambda p: ((p - 1) ** 2).sum(-1), dim=3, name="bowl", minima=((1.0,) * 3,))
    run = dl.descend(obj, start=(0.0, 0.0, 0.0), lr=0.1, steps=200)
    assert run.reached() == 0
    assert run.meta["function"] == "bowl"
