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


def test_a_grid_lists_every_combination_of_its_axes_in_the_runs_dtype():
    # point i0 + 3 i1 + 12 i2 is (a0[i0], a1[i1], a2[i2]), each axis computed in float64
    bounds = ((-1.0, 1.0), (0.0, 2.0), (5.0, 6.0))
    axes = [
        torch.linspace(lo, hi, c, dtype=torch.float64).numpy()
        for (lo, hi), c in zip(bounds, (3, 4, 2), strict=True)
    ]
    for dtype in (torch.float32, torch.float64):
        pts = dl.grid((3, 4, 2), bounds=bounds).points(3, dtype=dtype)
        assert pts.dtype == dtype and pts.shape == (24, 3)
        want = [
            [a[i] for a, i in zip(axes, (i0, i1, i2), strict=True)]
            for i2 in range(2)
            for i1 in range(4)
            for i0 in range(3)
        ]
        np.testing.assert_array_equal(pts.numpy(), np.array(want).astype(pts.numpy().dtype))
    assert dl.grid((1, 3), bounds=((0, 2), (0, 1))).points(2)[:, 0].tolist() == [1.0, 1.0, 1.0]


def test_starts_and_runs_that_cannot_fit_are_refused_with_the_figure(monkeypatch):
    from descentlab import memory

    monkeypatch.setattr(memory, "_available_memory", lambda: 2.5e7)  # 20 MB to use
    # float32 points built from float64 values: 2 x (4 + 8) bytes a point
    with pytest.raises(
        dl.MemoryNeedError,
        match=r"random start of 1,000,000 points in 2-D "
        r"takes 24\.0 MB, but 20\.0 MB is available; use at most 833,333 points",
    ):
        dl.random(1_000_000, bounds=(-1, 1)).points(2)
    # gd's run, record='final': positions, value, norm (4 bytes each), status, step count,
    # 25 bytes a point, refused before a grid start (8 bytes a point more) is built
    with pytest.raises(
        dl.MemoryNeedError,
        match=r"1,000,000 points in 2-D needs at least 33\.0 MB but 20\.0 MB is available; "
        r"use at most 606,060 points$",
    ):
        dl.descend("himmelblau", dl.grid(1000), steps=2, record="final")
    assert dl.descend("himmelblau", dl.grid(778), steps=2, record="final").n_points == 605_284
    # starts given as an array are there already
    with pytest.raises(dl.MemoryNeedError, match=r"needs at least 25\.0 MB.* 800,000 points$"):
        dl.descend("himmelblau", np.zeros((1_000_000, 2), np.float32), steps=2, record="final")
    # Adam's two moments: 16 bytes more
    with pytest.raises(dl.MemoryNeedError, match=r"use at most 408,163 points"):
        dl.descend("himmelblau", dl.grid(778), steps=2, record="final", optimizer="adam")
    # recording every step: 16 bytes a point a row on top, and record='final' suggested
    with pytest.raises(
        dl.MemoryNeedError, match=r"\(16\.0 MB of it the recording\).*or record='final'"
    ):
        dl.descend("himmelblau", dl.grid(1000), steps=0)


def test_an_eager_run_that_cannot_fit_is_refused_or_compiled(monkeypatch):
    from descentlab import memory

    monkeypatch.setattr(memory, "_available_memory", lambda: 6.25e6)  # 5 MB to use
    # 100,489 points: the C loop's 25 bytes a point fit, the eager loop's (its parameter,
    # gradient, previous positions, values, flags and f's saved tensors: 86 here) do not
    kw = dict(start=dl.grid(317), steps=3, record="final")
    with pytest.raises(
        dl.MemoryNeedError,
        match=r"^an eager run of 100,489 points in 2-D needs about 8\.\d MB but 5\.0 MB is "
        r"available; use at most 5\d,\d{3} points, or engine='compiled'$",
    ):
        dl.descend("himmelblau", engine="eager", **kw)
    run = dl.descend("himmelblau", engine="auto", **kw)  # auto compiles instead
    assert run.meta["engine"] == "compiled" and run.n_points == 100_489
    with pytest.raises(dl.MemoryNeedError, match=r"needs about 1\d\.\d MB .* points$"):
        dl.descend("himmelblau", optimizer="adamw", **kw)  # no compiled AdamW: no hint


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
