"""The engine's fixed semantics: tolerance, frozen points, divergence, recording, bad input."""

import math
import signal

import numpy as np
import pytest
import torch

import descentlab as dl


def test_per_point_tolerance_counts_steps_exactly():
    # f = x^2, lr 0.1: |dx_k| = 2|x0| 0.8^k, first below 0.01 at k = ceil(log(0.005/|x0|) / log 0.8)
    x0 = np.array([1.8, 0.5, -3.0, 0.004])
    run = dl.descend(lambda x: x**2, start=x0, dim=1, lr=0.1, tol=0.01, dtype=torch.float64)
    expected = [max(0, math.ceil(math.log(0.005 / abs(v)) / math.log(0.8))) for v in x0]
    assert run.steps.tolist() == expected
    assert (run.status == "converged").all()


def test_converged_points_stay_put_while_momentum_would_move_them():
    starts = [(0.001, 0.0), (2.0, -1.5)]
    run = dl.descend("sphere", starts, optimizer="momentum", lr=0.05, tol=0.01, steps=400)
    assert run.steps[0] == 0 and run.status[0] == "converged"
    np.testing.assert_array_equal(
        run.path[:, 0], np.broadcast_to(run.start[0], run.path[:, 0].shape)
    )
    k = run.steps[1]
    assert run.status[1] == "converged"
    np.testing.assert_array_equal(
        run.path[k:, 1], np.broadcast_to(run.path[k, 1], run.path[k:, 1].shape)
    )


def test_divergence_is_reported_without_nan():
    run = dl.descend("himmelblau", dl.grid(30), lr=0.1, steps=200)
    assert run.diverged.sum() == run.n_points
    for array in (run.path, run.values, run.grad_norms, run.x, run.value):
        assert np.isfinite(array).all()
    assert (run.steps >= 1).all()
    # each diverged point is kept at its last finite position, which is a recorded earlier step
    i = 0
    assert np.array_equal(run.x[i], run.path[run.steps[i] - 1, i])


def test_divergence_from_non_finite_values():
    # sqrt(x) from 1 with lr 4: x1 = 1 - 4 * 0.5 = -1, where sqrt is nan: diverged at step 1,
    # kept at x0 = 1, its last finite position
    run = dl.descend(lambda x: torch.sqrt(x), start=1.0, lr=4.0, steps=3)
    assert run.status == "diverged" and run.steps == 1
    assert float(run.x) == 1.0 and float(run.value) == 1.0
    assert np.isfinite(run.values).all()


def test_blowup_bound():
    run = dl.descend(lambda x: -(x**2), start=1.0, lr=0.5, steps=100, blowup=1e3)
    assert run.status == "diverged"
    assert abs(float(run.x)) <= 1e3


def test_record_every_k_and_final_agree_with_all():
    kw = dict(f="rosenbrock", start=dl.grid(5), optimizer="adam", lr=0.01, steps=23)
    full = dl.descend(**kw)
    every = dl.descend(**kw, record=5)
    final = dl.descend(**kw, record="final")
    assert every.recorded.tolist() == [0, 5, 10, 15, 20, 23]
    np.testing.assert_array_equal(every.path, full.path[every.recorded])
    assert final.recorded.tolist() == [23]
    np.testing.assert_array_equal(final.path[0], full.path[-1])
    np.testing.assert_array_equal(final.x, full.x)


def test_recording_that_cannot_fit_is_refused_before_allocating():
    with pytest.raises(dl.RecordingError, match=r"needs .* use record='final', record=\d+"):
        dl.descend("himmelblau", dl.grid(1000), steps=10_000, max_memory=1e9)
    with pytest.raises(dl.RecordingError, match=r"record=101 \(every 101st step\)"):
        dl.descend("himmelblau", dl.grid(1000), steps=1000, max_memory=1.8e8)


def test_early_stop_when_every_point_converged():
    run = dl.descend("sphere", [(1.0, 1.0)], lr=0.25, tol=1e-6, steps=10_000)
    assert run.iterations == run.steps[0] < 40
    assert run.path.shape[0] == run.iterations + 1


def test_norm_two_versus_inf():
    g_inf = dl.descend("sphere", (3.0, 4.0), steps=0).grad_norm
    g_two = dl.descend("sphere", (3.0, 4.0), steps=0, norm=2).grad_norm
    assert float(g_inf) == 8.0 and float(g_two) == 10.0


def test_bounds_clamp_every_step():
    run = dl.descend(lambda x: -x, start=0.0, lr=1.0, steps=10, bounds=(-1, 2.5))
    assert float(run.x) == 2.5
    with pytest.raises(dl.StartError, match="outside bounds"):
        dl.descend("sphere", (3.0, 0.0), bounds=(-1, 1))


def test_gradient_methods_give_the_same_descent():
    starts = dl.grid(6)
    kw = dict(lr=0.005, steps=30, dtype=torch.float64)
    auto = dl.descend("himmelblau", starts, **kw)
    central = dl.descend("himmelblau", starts, grad="central", **kw)

    def by_hand(x, y):  # the partial derivatives written out, the example's power-rule way
        return 4 * x * (x**2 + y - 11) + 2 * (x + y**2 - 7), 2 * (x**2 + y - 11) + 4 * y * (
            x + y**2 - 7
        )

    def f(x, y):
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    hand = dl.descend(f, starts.points(2, ((-5, 5), (-5, 5)), torch.float64), grad=by_hand, **kw)
    np.testing.assert_allclose(central.path, auto.path, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hand.path, auto.path, rtol=1e-12, atol=1e-12)


def test_float64_on_request():
    run = dl.descend("sphere", (1.0, 1.0), steps=3, dtype="float64")
    assert run.path.dtype == np.float64
    assert dl.descend("sphere", (1.0, 1.0), steps=3).path.dtype == np.float32


def test_ctrl_c_keeps_what_was_computed():
    calls = {"n": 0}

    def f(x):
        calls["n"] += 1
        if calls["n"] == 12:  # the probe takes a few calls; interrupt mid-run
            signal.raise_signal(signal.SIGINT)
        return (x**2).sum(-1)

    run = dl.descend(f, start=[(1.0, 2.0), (3.0, 4.0)], lr=0.01, steps=1000, engine="eager")
    assert (run.status == "interrupted").all()
    assert 0 < run.iterations < 1000
    assert run.path.shape[0] == run.iterations + 1
    np.testing.assert_array_equal(run.x, run.path[-1])


def test_steps_zero_evaluates_the_start():
    run = dl.descend("booth", (1.0, 3.0), steps=0)
    assert run.steps == 0 and float(run.value) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": 0}, dl.DescentError, "lr must be a finite number > 0"),
        ({"lr": -0.1}, dl.DescentError, "lr must be"),
        ({"lr": float("nan")}, dl.DescentError, "lr must be"),
        ({"steps": -1}, dl.DescentError, "steps must be an integer >= 0"),
        ({"steps": 2.5}, dl.DescentError, "steps must be an integer"),
        ({"tol": -1e-3}, dl.DescentError, "tol must be a finite number >= 0"),
        ({"norm": 3}, dl.DescentError, "norm must be"),
        ({"record": "some"}, dl.DescentError, "record must be"),
        ({"record": 0}, dl.DescentError, "record must be"),
        ({"dtype": "int32"}, dl.DescentError, "dtype must be float32 or float64"),
        ({"grad": "numeric"}, dl.DescentError, "grad must be"),
        ({"start": (1.0, float("nan"))}, dl.StartError, "non-finite"),
        ({"start": (1.0, float("inf"))}, dl.StartError, "non-finite"),
        ({"start": (1.0, 2.0, 3.0)}, dl.StartError, "3 coordinates per point"),
        ({"start": []}, dl.StartError, "empty"),
        ({"start": "origin"}, dl.StartError, "string"),
        ({"start": [[1, 2], [3]]}, dl.StartError, "start must be"),
    ],
)
def test_bad_input_gives_its_error(kwargs, error, message):
    args = {"f": "himmelblau", "start": (0.0, 0.0), **kwargs}
    with pytest.raises(error, match=message) as info:
        dl.descend(**args)
    assert "\n" not in str(info.value)


def test_a_missing_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(dl.DescentError, match="CUDA is not available"):
        dl.descend("sphere", (1.0, 1.0), device="cuda")


def test_cuda_matches_cpu(cuda):
    cpu = dl.descend(
        "himmelblau", dl.grid(20), optimizer="adam", lr=0.01, steps=50, dtype="float64"
    )
    gpu = dl.descend(
        "himmelblau",
        dl.grid(20),
        optimizer="adam",
        lr=0.01,
        steps=50,
        dtype="float64",
        device=cuda,
    )
    np.testing.assert_allclose(gpu.path, cpu.path, rtol=1e-9, atol=1e-9)


def test_progress_bar_only_when_asked_outside_a_terminal():
    import subprocess
    import sys

    code = (
        "import descentlab as dl; dl.descend('rastrigin', dl.random(2000, seed=0), dim=3, "
        "steps=300, record='final', progress={})"
    )
    forced = subprocess.run(
        [sys.executable, "-c", code.format(True)], capture_output=True, text=True
    )
    quiet = subprocess.run(
        [sys.executable, "-c", code.format(None)], capture_output=True, text=True
    )
    assert "descending" in forced.stderr and "100%" in forced.stderr
    assert quiet.stderr == ""


@pytest.mark.parametrize("d", [1, 2, 3, 10, 11, 30])
def test_the_per_step_checks_equal_their_plain_forms(d):
    from descentlab.descent.rules import _some, healthy, max_abs

    gen = torch.Generator().manual_seed(d)
    x = torch.randn(400, d, generator=gen) * 10.0 ** torch.randint(-3, 8, (400, d), generator=gen)
    v, gn = torch.randn(400, generator=gen), torch.rand(400, generator=gen)
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e6, 3.4e38]
    for i, value in enumerate(specials):  # each special in x, v and gn, on rows of its own
        x[i, i % d], v[10 + i], gn[20 + i] = value, value, abs(value)
    assert torch.equal(max_abs(x).isnan(), x.abs().amax(-1).isnan())
    assert torch.equal(max_abs(x).nan_to_num(-1.0), x.abs().amax(-1).nan_to_num(-1.0))
    plain = torch.isfinite(v) & torch.isfinite(gn) & (x.abs().amax(-1) <= 1e6)
    assert torch.equal(healthy(x, v, gn, 1e6), plain) and 0 < plain.sum() < 400
    wide = x.double() * (1 + 2**-40)  # differs from x below float32's precision
    plain = torch.isfinite(v) & torch.isfinite(gn) & (wide.abs().amax(-1) <= 1e6)
    assert torch.equal(healthy(wide, v, gn, 1e6), plain)
    assert _some(plain) and not _some(torch.zeros(5, dtype=torch.bool))
