"""The compiled engine gives the eager engine's results with either backend (the C loop and
inductor): every registered function with every compiled optimizer, every record mode, events
inside fused calls, bounds, formulas and callables."""

import os
import warnings

import numpy as np
import pytest

import descentlab as dl

OPTIMIZERS = ["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


@pytest.fixture(params=["c", "inductor"])
def kernel(request, monkeypatch):
    """Each backend of the compiled engine in turn: the C loop first, inductor without it."""
    monkeypatch.setenv("DESCENTLAB_C_LOOP", "on" if request.param == "c" else "off")
    return request.param


def both(f, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a silent fallback would fail the test
        c = dl.descend(f, engine="compiled", **kw)
    e = dl.descend(f, engine="eager", **kw)
    assert c.meta["engine"] == "compiled" and e.meta["engine"] == "eager"
    expected = "inductor" if os.environ.get("DESCENTLAB_C_LOOP") == "off" else "c"
    assert c.meta["kernel"] == expected  # none fell back
    return c, e


def same(c, e, atol, rtol=None):
    for name in ("path", "values", "grad_norms", "x_", "value_", "grad_norm_"):
        np.testing.assert_allclose(
            getattr(c, name), getattr(e, name), atol=atol, rtol=rtol or atol, err_msg=name
        )
    assert np.array_equal(c.status_, e.status_) and np.array_equal(c.steps_, e.steps_)
    assert np.array_equal(c.recorded, e.recorded)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_compiled_optimizer_equals_eager(optimizer, kernel):
    # 50 steps: 51 iterations, so the last block ends in a call with dead sub-steps; with and
    # without tol (a kernel of its own: without tol the gradient norm is not tested mid-block)
    kw = dict(start=dl.grid(12), optimizer=optimizer, lr=0.004, steps=50, dtype="float64")
    same(*both("himmelblau", record="final", tol=1e-3, **kw), atol=1e-12)
    if kernel == "inductor" and optimizer != "gd":  # (each variant is a cold torch.compile)
        return
    c, e = both("himmelblau", record="final", **kw)
    same(c, e, atol=1e-12)
    assert c.iterations == 50


@pytest.mark.slow
def test_compiled_rmsprop_with_momentum_equals_torch_rmsprop(kernel):
    # torch's RMSprop with momentum keeps a second buffer and steps by it ("rmsprop_momentum");
    # without, it divides the gradient itself: two compiled updates
    kw = dict(start=dl.grid(12), optimizer="rmsprop", lr=0.004, steps=50, dtype="float64")
    same(*both("himmelblau", record="all", momentum=0.5, tol=1e-3, **kw), atol=1e-12)


@pytest.mark.slow
def test_compiled_adam_with_a_small_beta1_equals_torch_adam(kernel):
    # torch's lerp takes g + (w - 1)(g - m) for a weight w = 1 - beta1 of 0.5 or more
    # ("adam_lerp"), and the compiled Adam multiplies by 1 / sqrt(1 - beta2^t) where torch
    # divides: a float's rounding apart at beta1 = 0.3 too
    kw = dict(start=dl.grid(12), optimizer="adam", lr=0.004, steps=50, dtype="float64")
    c, e = both("himmelblau", record="final", betas=(0.3, 0.9), **kw)
    same(c, e, atol=1e-12)


def test_the_c_loop_gives_torch_optims_sgd_bit_for_bit_in_float32():
    # torch's add with alpha (the step, Nesterov's look-ahead) is one fused multiply-add where
    # the CPU has one; the C loop's FMA is the same, or the same two roundings where it has none
    kw = dict(start=dl.grid(30), lr=0.004, steps=100, record="final")
    for optimizer in ("gd", "momentum", "nesterov"):
        c, e = both("himmelblau", optimizer=optimizer, **kw)
        assert c.meta["kernel"] == "c"
        assert np.array_equal(c.x_, e.x_), optimizer
        assert np.array_equal(c.value_, e.value_), optimizer


@pytest.mark.slow
def test_the_adaptive_optimizers_round_as_torch_optim_in_float32():
    # torch rounds 1 - beta (a double) to float32 once; 1 - float32(beta) is another number
    # (1 - 0.999: 1.3e-5 apart), and its kernels fuse addcmul and lerp. Done as torch does,
    # 81-99 % of these walks end on torch's bits (with 1 - float32(beta) and no FMA: RMSprop
    # 24 %, Adam 51 %); the rest part from torch's float32 square root, MKL's here, which is
    # not correctly rounded (an ulp off for 19 % of inputs), and Adam's multiply by a
    # reciprocal where torch divides
    start = dl.grid(30)
    for optimizer, lr, kw in [
        ("adagrad", 0.05, {}),
        ("rmsprop", 0.01, {}),
        ("rmsprop", 0.01, {"momentum": 0.5}),
        ("adam", 0.05, {}),
        ("adam", 0.05, {"betas": (0.3, 0.9)}),
    ]:
        c, e = both("himmelblau", start=start, optimizer=optimizer, lr=lr, steps=100, **kw)
        assert c.meta["kernel"] == "c"
        identical = np.all(c.x_ == e.x_, axis=1).mean()
        assert identical >= 0.75, (optimizer, kw, identical)


@pytest.mark.slow
def test_events_inside_a_fused_call_are_caught(kernel):
    # several steps run in one compiled call; an event at any of them must reach the replay.
    # -(x**4) from 1e9: the value overflows float32 at step 3 while the gradient is still
    # finite (only the value test sees it); the other point never stops
    c, e = both("-(x**4)", start=[[1e9], [1.0]], lr=1e-19, steps=40, blowup=1e15, record="final")
    same(c, e, atol=1e-6)
    assert list(e.status_) == [2, 0] and e.steps_[0] == 3
    # clamped into a box, an infinite gradient lands on the wall as a finite position: the
    # fused steps must test the gradient themselves (sqrt's gradient at 0 is infinite)
    kw = dict(start=[[1.0], [0.9], [1.5]], lr=4.0, steps=30, bounds=(0, 2), record="final")
    c, e = both("x**0.5", **kw)
    same(c, e, atol=1e-6)
    assert (e.status_ == 2).all()
    # a start so large that 1e6 x |x0| overflows float32: the blow-up bound is the largest float
    c, e = both("x**2", start=[[1e33], [1.0]], lr=0.1, steps=20, record="final")
    same(c, e, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_recording_every_step_and_every_kth(optimizer, kernel):
    kw = dict(start=dl.grid(10), optimizer=optimizer, lr=0.004, steps=30, dtype="float64")
    same(*both("himmelblau", record="all", **kw), atol=1e-12)
    if kernel == "c" or optimizer == "gd":  # (each variant is a cold torch.compile)
        same(*both("himmelblau", record=7, **kw), atol=1e-12)


@pytest.mark.slow
def test_divergence_bounds_formulas_and_callables_in_float32(kernel):
    # stable rates: beyond them (lr 0.05 on Himmelblau) walks are chaotic and float rounding
    # grows ~1e12-fold in 40 steps, in either engine
    same(*both("himmelblau", start=dl.grid(15), lr=0.1, steps=40, record="final"), atol=1e-3)
    clamped = dl.descend(
        "himmelblau",
        start=dl.grid(9, bounds=(-4, 3)),
        lr=0.01,
        steps=60,
        bounds=(-4, 3),
        engine="compiled",
        record="final",
    )
    assert (clamped.x[:, 0] == 3.0).sum() > 5  # the minimum at x = 3.58 lies outside: walls engage
    same(
        *both(
            "himmelblau",
            start=dl.grid(9, bounds=(-4, 3)),
            lr=0.01,
            steps=60,
            bounds=(-4, 3),
            record="all",
        ),
        atol=1e-5,
    )
    kw = dict(
        start=dl.grid(8, bounds=(-2, 2)), optimizer="momentum", lr=0.01, steps=40, record="final"
    )
    same(*both("x**2 + 3*sin(y)**2", **kw), atol=1e-5)
    same(
        *both(
            lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
            start=[(-1.0, 1.0), (0.5, 0.5)],
            optimizer="adam",
            lr=0.01,
            steps=60,
            record="final",
        ),
        atol=1e-5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_a_final_only_record_is_the_final_state_not_a_copy(engine):
    # its one row is a view of x, f(x) and the norm: a copy wrote 16 MB of fresh pages per
    # million points, a tenth of a 100-step compiled run
    run = dl.descend("himmelblau", dl.grid(8), steps=30, tol=1e-2, record="final", engine=engine)
    assert run.meta["engine"] == engine and 0 < (run.status == "converged").sum() < 64
    for recorded, final in ((run.path, run.x_), (run.values, run.value_)):
        assert recorded.shape[0] == 1 and np.shares_memory(recorded, final)
        np.testing.assert_array_equal(recorded[0], final)
    assert np.shares_memory(run.grad_norms, run.grad_norm_)
    stopped = run.status_ != 0
    assert (run.steps_[~stopped] == 30).all() and run.steps_[stopped].max() <= 30
    assert run.steps_[stopped].min() < 30


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
@pytest.mark.parametrize("record", ["final", "all"])
def test_cuda_compiled_equals_eager_on_the_device(cuda, optimizer, record):
    # inductor's kernels on the GPU, events and replays included (some points converge; one
    # diverges under gd and momentum, while Adam's steps, bounded by lr, bring it home), against
    # the eager loop on the same device
    start = np.concatenate([dl.grid(30).points(2, ((-5, 5), (-5, 5))).numpy(), [[40.0, -40.0]]])
    kw = dict(start=start, optimizer=optimizer, lr=0.004, steps=150, tol=1e-3, blowup=1e3)
    kw.update(dtype="float64", record=record, device=cuda)
    c = dl.descend("himmelblau", engine="compiled", **kw)
    e = dl.descend("himmelblau", engine="eager", **kw)
    assert c.meta["kernel"] == "inductor" and c.meta["device"].startswith("cuda")
    same(c, e, atol=1e-10)
    events = {"running", "converged"} | ({"diverged"} if optimizer != "adam" else set())
    assert events <= set(c.status)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_cuda_compiled_schedule_equals_eager_on_the_device(cuda, optimizer):
    # each step's rate in the call's scalars (Adam's in its step size), replays included
    start = np.concatenate([dl.grid(20).points(2, ((-5, 5), (-5, 5))).numpy(), [[40.0, -40.0]]])
    kw = dict(start=start, optimizer=optimizer, lr=0.01, steps=150, tol=1e-3, blowup=1e3)
    kw.update(dtype="float64", device=cuda, schedule=("cosine", {"warmup": 10}), record="final")
    c = dl.descend("himmelblau", engine="compiled", **kw)
    e = dl.descend("himmelblau", engine="eager", **kw)
    assert c.meta["kernel"] == "inductor" and c.meta["device"].startswith("cuda")
    # on an H200, one coordinate of 802 (momentum) ended 3.6e-10 apart after 150 steps: the
    # two engines' kernels round a changing rate's products differently
    same(c, e, atol=1e-9)
    np.testing.assert_array_equal(c.rates, e.rates)
