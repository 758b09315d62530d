import numpy as np
import pytest
import torch

import descentlab as dl


def test_grid_includes_endpoints_and_varies_x_fastest():
    pts = dl.grid(3, bounds=((-1, 1), (0, 4))).points(2)
    assert pts.tolist()[:4] == [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 2.0]]
    assert pts.tolist()[-1] == [1.0, 4.0]


def test_grid_uses_the_objectives_domain_and_reshapes_to_y_x():
    run = dl.descend("six_hump_camel", dl.grid((4, 3)), steps=0)
    assert run.n_points == 12 and run.grid_shape == (3, 4)
    xs = run.start[:, 0].reshape(run.grid_shape)
    ys = run.start[:, 1].reshape(run.grid_shape)
    np.testing.assert_allclose(xs[0], [-3, -1, 1, 3])
    np.testing.assert_allclose(ys[:, 0], [-2, 0, 2])


def test_grid_in_d_dimensions():
    assert dl.descend("rastrigin", dl.grid(4), dim=3, steps=0).n_points == 64


def test_random_is_seeded_and_inside_bounds():
    a = dl.random(500, bounds=(-2, 3), seed=1).points(2)
    b = dl.random(500, bounds=(-2, 3), seed=1).points(2)
    assert torch.equal(a, b)
    assert a.min() >= -2 and a.max() <= 3
    c = dl.random(500, bounds=(-2, 3), seed=2).points(2)
    assert not torch.equal(a, c)


def test_random_covers_the_box_uniformly():
    pts = dl.random(40_000, bounds=(0, 1), seed=0).points(1).numpy()[:, 0]
    counts, _ = np.histogram(pts, bins=10, range=(0, 1))
    assert counts.min() > 3700 and counts.max() < 4300


def test_grid_and_random_need_bounds_without_a_domain():
    with pytest.raises(dl.StartError, match="need bounds"):
        dl.descend("x**2 + y**2", dl.grid(5))
    run = dl.descend("x**2 + y**2", dl.grid(5, bounds=(-1, 1)), steps=1)
    assert run.n_points == 25


def test_huge_grids_are_refused():
    with pytest.raises(dl.StartError, match="points; use fewer"):
        dl.descend("rastrigin", dl.grid(1000), dim=4)


def test_bad_bounds():
    with pytest.raises(dl.StartError, match="lo < hi"):
        dl.grid(3, bounds=(1, -1)).points(2)


def test_easom_grid_covers_its_view_not_the_whole_domain():
    run = dl.descend("easom", dl.grid(5), steps=0)
    view = dl.functions.get("easom").view
    assert run.start[:, 0].min() == pytest.approx(view[0][0]) and run.start[
        :, 0
    ].max() == pytest.approx(view[0][1])
    wide = dl.descend("easom", dl.grid(5, bounds=(-100, 100)), steps=0)
    assert wide.start[:, 0].min() == -100
