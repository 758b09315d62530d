"""The compiled engine gives the eager engine's results with either compiler (the C loop,
`native`, and inductor), falls back when it cannot compile, and `auto` chooses it only when it
pays."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab import compiled

OPTIMIZERS = ["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


@pytest.fixture(params=["c", "inductor"])
def kernel(request, monkeypatch):
    """Each compiler of the compiled engine in turn: the C loop first, inductor without it."""
    monkeypatch.setattr(compiled, "USE_C", request.param == "c")
    return request.param


@pytest.fixture
def inductor(monkeypatch):
    monkeypatch.setattr(compiled, "USE_C", False)


def both(f, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a silent fallback would fail the test
        c = dl.descend(f, engine="compiled", **kw)
    e = dl.descend(f, engine="eager", **kw)
    assert c.meta["engine"] == "compiled" and e.meta["engine"] == "eager"
    assert c.meta["kernel"] == ("c" if compiled.USE_C else "inductor")  # none fell back
    return c, e


def same(c, e, atol):
    for name in ("path", "values", "grad_norms", "x_", "value_", "grad_norm_"):
        np.testing.assert_allclose(
            getattr(c, name), getattr(e, name), atol=atol, rtol=atol, err_msg=name
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
@pytest.mark.parametrize("block", [1, 3, 6, 16])
def test_blocks_with_events_are_replayed_exactly(monkeypatch, block, inductor):
    # points converge at many different steps (some in the first block), a few diverge, and
    # every point has stopped long before `steps`: the run must end where the eager one ends
    monkeypatch.setattr(compiled, "BLOCK", block)
    starts = np.concatenate([dl.grid(7).points(2, ((-3, 3), (-3, 3))).numpy(), [[40.0, -35.0]]])
    kw = dict(start=starts, lr=0.03, steps=400, tol=1e-2, blowup=1e3, dtype="float64")
    for record in ("all", 4, "final"):
        c, e = both("x**2 + 3*y**2 + x*y", record=record, **kw)
        same(c, e, atol=1e-12)
    assert (e.status_ == 1).sum() > 40 and e.steps_.max() < 200
    assert len(np.unique(e.steps_)) > 10
    # a run that diverges on its first iteration, and momentum with state to carry across
    momentum = dict(start=dl.grid(9), optimizer="momentum", lr=0.004, steps=60, tol=0.3)
    c, e = both("himmelblau", dtype="float64", **momentum)
    same(c, e, atol=1e-12)
    assert (e.status_ == 1).sum() >= 3  # events mid-run, with momentum state to restore
    same(*both("x**2", start=[[1.0], [1e30]], lr=0.1, steps=20, blowup=1e6), atol=1e-6)


def test_unsupported_runs_are_refused_or_left_eager():
    with pytest.raises(dl.DescentError, match="optimizer 'radam' has no compiled update"):
        dl.descend("sphere", (1.0, 1.0), optimizer="radam", steps=3, engine="compiled")
    with pytest.raises(dl.DescentError, match="only autograd"):
        dl.descend("sphere", (1.0, 1.0), grad="central", steps=3, engine="compiled")
    with pytest.raises(dl.DescentError, match="amsgrad=True"):
        dl.descend("sphere", (1.0, 1.0), optimizer="adam", amsgrad=True, steps=3, engine="compiled")
    with pytest.raises(dl.DescentError, match="engine must be .*'jit'$"):
        dl.descend("sphere", (1.0, 1.0), steps=3, engine="jit")
    with pytest.raises(dl.DescentError, match="did you mean 'compiled'"):
        dl.descend("sphere", (1.0, 1.0), steps=3, engine="compyled")
    assert dl.descend("sphere", (1.0, 1.0), optimizer="radam", steps=3).meta["engine"] == "eager"


def test_auto_compiles_only_when_it_pays(monkeypatch, tmp_path):
    from descentlab import native
    from descentlab.functions import get
    from descentlab.optimizers import resolve

    # nothing built in this process or on disk
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for name in ("_KERNELS", "_SOURCES", "_LIBRARIES", "_CHECKED"):
        monkeypatch.setattr(native, name, {})
    monkeypatch.setattr(compiled, "_CACHE", {})  # nor inductor's kernels
    args = (get("himmelblau"), resolve("gd", 0.01))
    rest = (2, torch.float32, "cpu", float("inf"), None)
    # in a process where eager has not run, its first optimizer imports dynamo (1.1-1.4 s):
    # even a 10-step run is worth a build (0.3-0.6 s) then
    monkeypatch.setattr(compiled, "dynamo_imported", lambda: False)
    assert compiled.worth_compiling(*args, 1, 10, *rest)
    # but a sweep deciding for its many (function, optimizer) pairs pays the import only once
    assert not compiled.worth_compiling(*args, 1, 10, *rest, single=False)
    monkeypatch.setattr(compiled, "dynamo_imported", lambda: True)  # eager has run here
    # 1e5 point-steps: eager takes 0.035 s, less than loading a built C loop
    assert not compiled.worth_compiling(*args, 1_000, 100, *rest)
    assert native.readiness(*args[:1], "gd", False, 2, torch.float32, math.inf, False, False) > 0.3
    # 1e6 point-steps: 0.08 s eager, less than a build; 1e8: 5 s eager, more
    assert not compiled.worth_compiling(*args, 10_000, 100, *rest)
    assert compiled.worth_compiling(*args, 1_000_000, 100, *rest)
    assert dl.descend("himmelblau", dl.grid(100), steps=100).meta["engine"] == "eager"
    # built on disk (by a compiled run, here, whose process has it too), it pays from 1e6
    dl.descend("himmelblau", dl.grid(10), steps=5, engine="compiled", record="final")
    assert list(tmp_path.glob("c/*.so"))
    assert native.readiness(*args[:1], "gd", False, 2, torch.float32, math.inf, False, False) == 0
    for name in ("_KERNELS", "_LIBRARIES", "_CHECKED"):  # as a new process would see it
        monkeypatch.setattr(native, name, {})
    assert native.readiness(*args[:1], "gd", False, 2, torch.float32, math.inf, False, False) == (
        native.LOAD_SECONDS
    )
    assert compiled.worth_compiling(*args, 10_000, 100, *rest)
    assert not compiled.worth_compiling(*args, 1_000, 100, *rest)
    # and once this process has it, every run uses it, whatever it records
    run = dl.descend("himmelblau", dl.grid(100), steps=100)
    assert run.meta["engine"] == "compiled" and run.meta["kernel"] == "c"
    assert compiled.worth_compiling(*args, 10, 10, *rest)


def test_auto_compiles_with_inductor_only_when_it_pays(monkeypatch, inductor):
    from descentlab.functions import get
    from descentlab.optimizers import resolve

    monkeypatch.setattr(compiled, "_CACHE", {})
    args = (get("himmelblau"), resolve("gd", 0.01))
    small = compiled.worth_compiling(
        *args, 10_000, 100, 2, torch.float32, "cpu", float("inf"), None
    )
    large = compiled.worth_compiling(
        *args, 10_000_000, 100, 2, torch.float32, "cpu", float("inf"), None
    )
    assert not small and large
    assert dl.descend("himmelblau", dl.grid(100), steps=100).meta["engine"] == "eager"
    # once its steps are compiled, even a small run uses them
    dl.descend("himmelblau", dl.grid(10), steps=5, engine="compiled", record="final")
    assert dl.descend("himmelblau", dl.grid(100), steps=100).meta["engine"] == "eager"
    assert dl.descend("himmelblau", dl.grid(100), record="final").meta["engine"] == "compiled"


def test_a_failed_compile_falls_back_to_eager_with_a_note(monkeypatch, inductor):
    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(compiled, "_CACHE", {})
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(
        UserWarning, match="compiled engine unavailable .*no C compiler.*running eager"
    ):
        run = dl.descend("himmelblau", dl.grid(5), steps=5, engine="compiled")
    assert run.meta["engine"] == "eager"
    np.testing.assert_array_equal(
        run.path, dl.descend("himmelblau", dl.grid(5), steps=5, engine="eager").path
    )


WARNINGS_AS_ERRORS = r"""
import sys, descentlab as dl
from descentlab import compiled
compiled.USE_C = sys.argv[1] == "c"
run = dl.descend("himmelblau", dl.grid(8), steps=30, tol=1e-3, engine="compiled")
print(run.meta["engine"], run.meta["kernel"], "torch._inductor" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["c", "inductor"])
def test_warnings_as_errors_do_not_stop_the_compile(kernel):
    # importing inductor warns that torch.jit.script_method is deprecated: under -W error (or
    # pytest's filterwarnings = error) that became a fallback, and the fallback's note an error
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", WARNINGS_AS_ERRORS, kernel],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = str(kernel == "inductor")  # the C loop needs neither dynamo nor inductor
    assert done.stdout.split() == ["compiled", kernel, imported], done.stderr[-2000:]


def test_only_torchs_own_deprecation_notices_are_dropped():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with compiled.quiet_torch():
            for module in ("torch", "torch.jit._script"):
                warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module=module)
            warnings.warn_explicit("soon", FutureWarning, "x.py", 1, module="torch.export")
            with pytest.raises(DeprecationWarning):  # from f, from the user's code: kept
                warnings.warn("mine", DeprecationWarning, stacklevel=1)
            with pytest.raises(DeprecationWarning):
                warnings.warn_explicit("x", DeprecationWarning, "t.py", 1, module="torchvision")
            with pytest.raises(UserWarning):
                warnings.warn_explicit("y", UserWarning, "x.py", 1, module="torch._dynamo")
        with pytest.raises(DeprecationWarning):  # and only inside the block
            warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module="torch")


@pytest.mark.parametrize("record", ["all", 2, "final"])
def test_a_kernel_that_fails_at_its_first_call_falls_back_too(monkeypatch, record, inductor):
    # torch.compile is lazy: the C++ build runs at a kernel's first call, which in a recording
    # run comes after the recorder handed out a row
    def lazy_failure(fn, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("g++ failed")

        return call

    monkeypatch.setattr(compiled, "_CACHE", {})
    monkeypatch.setattr(torch, "compile", lazy_failure)
    kw = dict(start=dl.grid(5), steps=20, tol=1e-3, record=record)
    with pytest.warns(UserWarning, match="g.. failed.*running eager"):
        run = dl.descend("himmelblau", engine="compiled", **kw)
    eager = dl.descend("himmelblau", engine="eager", **kw)
    assert run.meta["engine"] == "eager"
    np.testing.assert_array_equal(run.path, eager.path)
    np.testing.assert_array_equal(run.recorded, eager.recorded)


def test_ctrl_c_stops_the_compiled_engine_at_a_block_end(monkeypatch, inductor):
    import contextlib

    from descentlab import descent

    @contextlib.contextmanager
    def second_check_interrupts():
        calls = iter(range(100))
        yield lambda: next(calls) >= 1

    monkeypatch.setattr(descent, "interrupt_flag", second_check_interrupts)
    kw = dict(start=dl.grid(6), lr=0.004, dtype="float64")
    run = dl.descend("himmelblau", steps=500, engine="compiled", **kw)
    assert (run.status == "interrupted").all() and (run.steps_ == run.iterations).all()
    assert run.iterations == 2 * compiled.BLOCK - 1 and run.path.shape[0] == run.iterations + 1
    np.testing.assert_array_equal(run.x, run.path[-1])
    monkeypatch.undo()
    shorter = dl.descend("himmelblau", steps=run.iterations, engine="eager", **kw)
    np.testing.assert_allclose(run.path, shorter.path, rtol=1e-12)


def test_ctrl_c_stops_the_c_loop_between_calls(monkeypatch):
    import contextlib

    from descentlab import descent, native

    @contextlib.contextmanager
    def first_check_interrupts():
        yield lambda: True

    monkeypatch.setattr(descent, "interrupt_flag", first_check_interrupts)
    monkeypatch.setattr(native, "FIRST_CALL_WORK", 36 * 10)  # 36 points: 10 iterations
    kw = dict(start=dl.grid(6), lr=0.004, dtype="float64")
    run = dl.descend("himmelblau", steps=500, engine="compiled", **kw)
    assert run.meta["kernel"] == "c"
    assert (run.status == "interrupted").all() and (run.steps_ == run.iterations).all()
    assert run.iterations == 9 and run.path.shape[0] == 10
    np.testing.assert_array_equal(run.x, run.path[-1])
    monkeypatch.undo()
    shorter = dl.descend("himmelblau", steps=9, engine="eager", **kw)
    np.testing.assert_allclose(run.path, shorter.path, rtol=1e-12)


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
