"""Inductor's loop (`engine.inductor.loop`): blocks with events are replayed exactly, a kernel
that fails falls back, Ctrl-C stops at a block's end, and only torch's own deprecation notices
are dropped while it compiles."""

import warnings

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.engine.inductor import loop as inductor_loop


@pytest.fixture
def inductor(monkeypatch):
    monkeypatch.setenv("DESCENTLAB_C_LOOP", "off")


def both(f, **kw):
    c = dl.descend(f, engine="compiled", **kw)
    e = dl.descend(f, engine="eager", **kw)
    assert c.meta["engine"] == "compiled" and c.meta["kernel"] == "inductor"
    return c, e


def same(c, e, atol):
    for name in ("path", "values", "grad_norms", "x_", "value_", "grad_norm_"):
        np.testing.assert_allclose(
            getattr(c, name), getattr(e, name), atol=atol, rtol=atol, err_msg=name
        )
    assert np.array_equal(c.status_, e.status_) and np.array_equal(c.steps_, e.steps_)
    assert np.array_equal(c.recorded, e.recorded)


@pytest.mark.slow
@pytest.mark.parametrize("block", [1, 3, 6, 16])
def test_blocks_with_events_are_replayed_exactly(monkeypatch, block, inductor):
    # points converge at many different steps (some in the first block), a few diverge, and
    # every point has stopped long before `steps`: the run must end where the eager one ends
    monkeypatch.setattr(inductor_loop, "BLOCK", block)
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


@pytest.mark.parametrize("record", ["all", 2, "final"])
def test_a_kernel_that_fails_at_its_first_call_falls_back_too(monkeypatch, record, inductor):
    # torch.compile is lazy: the C++ build runs at a kernel's first call, which in a recording
    # run comes after the recorder handed out a row
    def lazy_failure(fn, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("g++ failed")

        return call

    monkeypatch.setattr(inductor_loop, "_CACHE", {})
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

    from descentlab.descent import loop as descent

    @contextlib.contextmanager
    def second_check_interrupts():
        calls = iter(range(100))
        yield lambda: next(calls) >= 1

    monkeypatch.setattr(descent, "interrupt_flag", second_check_interrupts)
    kw = dict(start=dl.grid(6), lr=0.004, dtype="float64", tol=None)
    run = dl.descend("himmelblau", steps=500, engine="compiled", **kw)
    assert (run.status == "interrupted").all() and (run.steps_ == run.iterations).all()
    assert run.iterations == 2 * inductor_loop.BLOCK - 1 and run.path.shape[0] == run.iterations + 1
    np.testing.assert_array_equal(run.x, run.path[-1])
    monkeypatch.undo()
    shorter = dl.descend("himmelblau", steps=run.iterations, engine="eager", **kw)
    np.testing.assert_allclose(run.path, shorter.path, rtol=1e-12)


def test_only_torchs_own_deprecation_notices_are_dropped():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with inductor_loop.quiet_torch():
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


def test_a_callables_kernels_are_kept_by_the_function_not_its_id(inductor):
    # a collected function's id is reused: its kernels must go with it, not serve the next one
    def square(x):
        return (x**2).sum(-1)

    dl.descend(
        square, dl.grid(4, bounds=(-1, 1)), steps=3, engine="compiled", record="final", dim=2
    )
    assert square in inductor_loop._BY_FUNCTION  # the user's function, not its wrapper
    del square
    import gc

    gc.collect()

    def cube(x):
        return (x**4).sum(-1)

    kw = dict(start=dl.grid(4, bounds=(-1, 1)), steps=3, record="final", lr=0.01, dim=2)
    run = dl.descend(cube, engine="compiled", **kw)
    eager = dl.descend(cube, engine="eager", **kw)
    np.testing.assert_allclose(run.x_, eager.x_, rtol=1e-6)
