"""The C backend's loop (`engine.c.kernels`, `run`): what it cannot translate runs on inductor,
its loop gives the eager loop's results, and a built loop is kept for later processes (the
run-level comparisons live in tests/engine/test_engines_agree.py, over both backends and the
whole registry)."""

import math
import pickle
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab import engine
from descentlab.descent import optimizers
from descentlab.descent.loop import Settings
from descentlab.engine.c import build, kernels
from descentlab.engine.c import run as c_run
from descentlab.problem import functions
from descentlab.problem.resolve import resolve


def objective(f, d=None):
    start = [[0.5] * d] if d else [[0.5]]
    return resolve(f, start, dim=d, dtype=torch.float64, device="cpu", need_grad=True).objective


def kernel(obj, dtype=torch.float64, kind="gd"):
    return kernels.kernel(engine.Spec(obj, kind, False, obj.dim, dtype, math.inf, False, True))


@pytest.mark.slow
def test_an_untranslatable_objective_runs_on_inductor():
    f = lambda x: torch.lgamma(x[..., 0] + 3) + x[..., 1] ** 2  # noqa: E731
    kw = dict(start=dl.grid(5, bounds=((-2, 2), (-2, 2))), lr=0.05, steps=30, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run = dl.descend(f, engine="compiled", **kw)
    assert run.meta["kernel"] == "inductor"
    np.testing.assert_allclose(run.path, dl.descend(f, engine="eager", **kw).path, rtol=1e-12)


def test_threads_split_the_points_and_change_nothing():
    kw = dict(
        start=dl.grid(40), optimizer="momentum", lr=0.01, steps=100, tol=1e-2, engine="compiled"
    )
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dl.descend("himmelblau", **kw)
        torch.set_num_threads(3)
        three = dl.descend("himmelblau", **kw)
    finally:
        torch.set_num_threads(before)
    assert one.meta["kernel"] == three.meta["kernel"] == "c"
    for name in ("path", "values", "grad_norms", "steps_", "status_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(three, name), err_msg=name)
    assert 0 < (one.status == "converged").sum() < len(one.status)


def test_a_run_ends_where_its_last_point_stops():
    # every point converges by iteration 40 of 500: the eager loop stops there, and so must
    # the C loop, whose calls span many iterations
    kw = dict(start=dl.grid(9, bounds=(-1, 1)), lr=0.2, steps=500, tol=1e-3, dtype="float64")
    c = dl.descend("sphere", engine="compiled", **kw)
    e = dl.descend("sphere", engine="eager", **kw)
    assert c.meta["kernel"] == "c" and c.iterations == e.iterations < 60
    np.testing.assert_array_equal(c.recorded, e.recorded)
    np.testing.assert_allclose(c.path, e.path, rtol=1e-12)


def test_a_recording_holds_positions_and_computes_values_and_norms_when_asked(tmp_path):
    # the C loop writes positions only; values and norms come from them when first read, and
    # are the loop's own bits (its final state's) and autograd's to float rounding, for
    # running, converged and diverged points alike
    start = np.concatenate([dl.grid(20).points(2, ((-5, 5), (-5, 5))).numpy(), [[40.0, 40.0]]])
    kw = dict(start=start, lr=0.01, steps=60, tol=1e-2, norm=2, blowup=1e3, dtype="float32")
    c = dl.descend("himmelblau", engine="compiled", record="all", **kw)
    assert c.meta["kernel"] == "c" and c._values is None and c._grad_norms is None
    assert {"step limit", "converged", "diverged"} <= set(c.status)
    np.testing.assert_array_equal(c.values[-1], c.value_)
    np.testing.assert_array_equal(c.grad_norms[-1], c.grad_norm_)
    points = torch.from_numpy(c.path.reshape(-1, 2).astype(np.float64))
    x = points.clone().requires_grad_(True)
    f = functions.himmelblau(x)
    (g,) = torch.autograd.grad(f.sum(), x)
    np.testing.assert_allclose(c.values.reshape(-1), f.detach(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(c.grad_norms.reshape(-1), g.norm(dim=1), rtol=1e-5, atol=1e-3)
    e = dl.descend("himmelblau", engine="eager", record="all", **kw)
    np.testing.assert_allclose(c.values, e.values, rtol=1e-4, atol=1e-3)
    # a copy for another process, and a file, carry them
    again = pickle.loads(pickle.dumps(dl.descend("himmelblau", engine="compiled", record=5, **kw)))
    assert again._fill is None and again.values.shape == again.grad_norms.shape == (13, 401)
    loaded = dl.load(c.save(tmp_path / "run"))
    np.testing.assert_array_equal(loaded.values, c.values)
    np.testing.assert_array_equal(loaded.grad_norms, c.grad_norms)


def test_a_check_sum_that_overflows_is_no_divergence():
    # f is 3e38 and its gradient 1e19, both finite in float32: the fast path's test of
    # f + |g|^2 overflows and reports an event, and the full rules must find that there is none
    def f(x):
        return 3e38 + 1e19 * x[..., 0]

    kw = dict(start=[[-1.0], [0.0], [1.0]], lr=1e-20, steps=10, dtype="float32")
    c = dl.descend(f, engine="compiled", **kw)
    e = dl.descend(f, engine="eager", **kw)
    assert c.meta["kernel"] == "c"
    assert list(c.status) == list(e.status) == ["step limit"] * 3
    # torch.optim's update rounds once (a fused multiply-add), the C loop's twice (`updates`)
    np.testing.assert_allclose(c.x, e.x, atol=1e-6)
    np.testing.assert_allclose(c.x[:, 0], [-2.0, -1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("norm", [2, 1, math.inf])
def test_a_point_converges_at_the_first_iteration_its_norm_is_below_tol_in_float32(norm):
    # 20,000 starts on a line: gradient norms fall past tol at every rounding of the fast
    # path's test (for the 2-norm, |g|^2 against tol^2 rounded up, no square root); each point
    # stops at the first recorded norm below tol, and (the updates round differently) nearly
    # always at the eager loop's iteration
    start = np.linspace(-3, 3, 20_000)[:, None] * [1.0, 0.5]
    kw = dict(start=start, lr=0.05, steps=200, tol=1e-3, norm=norm, dtype="float32")
    c = dl.descend("sphere", engine="compiled", record="all", **kw)
    e = dl.descend("sphere", engine="eager", record="final", **kw)
    assert c.meta["kernel"] == "c" and (c.status == "converged").all()
    below = c.grad_norms < np.float32(1e-3)
    np.testing.assert_array_equal(c.steps, below.argmax(axis=0))
    assert len(np.unique(c.steps)) > 20 and (c.steps == e.steps).mean() > 0.99


LATER = r"""
import sys, descentlab as dl
from descentlab.engine.c import build
def refuse(*args):
    raise AssertionError("compiled again")
build._compile = refuse
start = dl.grid(20, bounds=(-4, 4))
run = dl.descend(sys.argv[1], start, lr=0.01, steps=500, record="final", engine="auto")
print(run.meta["engine"], run.meta["kernel"], "torch._dynamo" in sys.modules)
"""


FRESH = r"""
import sys, descentlab as dl
run = dl.descend("himmelblau", dl.grid(20, bounds=(-4, 4)), lr=0.01, steps=100, engine="auto")
print(run.meta["engine"], run.meta["kernel"], "torch._dynamo" in sys.modules)
"""


def test_a_fresh_process_builds_the_loop_rather_than_import_dynamo(tmp_path, monkeypatch):
    # 400 points x 100 steps take 0.01 s eager, but the eager engine's first torch.optim
    # optimizer imports dynamo (1.1-1.4 s here); the build takes 0.3-0.6 s
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["compiled", "c", "False"], done.stderr[-2000:]


def test_a_built_loop_is_kept_for_later_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_KERNELS", {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    monkeypatch.setattr(kernels, "_CHECKED", {})
    formula = "(x**2 + y - 11)**2 + (x + y**2 - 7)**2 + 0.25*x"
    dl.descend(formula, dl.grid(4, bounds=(-4, 4)), steps=3, record="final", engine="compiled")
    assert len(list(tmp_path.glob("*.so"))) == 1
    # a fresh process: 400 points x 500 steps take 0.16 s eager, less than a build (0.56 s),
    # more than loading what is built
    done = subprocess.run(
        [sys.executable, "-c", LATER, formula], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["compiled", "c", "False"], done.stderr[-2000:]


def test_a_cuda_run_is_compiled_by_inductor(cuda):
    run = dl.descend("himmelblau", dl.grid(8), steps=20, engine="compiled", device=cuda)
    assert run.meta["kernel"] == "inductor"


def test_without_libmvec_the_loop_is_built_on_scalar_math(tmp_path, monkeypatch):
    # macOS, musl and old glibc have no libmvec: the vector source fails to link there, and the
    # engine builds its twin that calls libm's scalar functions instead (simulated here by a
    # compiler that refuses the vector source); Rastrigin's cos then runs through libm
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for cache in ("_KERNELS", "_CHECKED", "_SOURCES"):
        monkeypatch.setattr(kernels, cache, {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    built = []
    real = build._run_compiler

    def no_libmvec(argv, lib, cancelled):
        if "-lmvec" in argv:  # the linker's own refusal, as where there is none
            argv = [a.replace("-lmvec", "-ldescentlab_no_such_library") for a in argv]
        else:
            built.append(Path(argv[1 + len(build.FLAGS)]).read_text())  # the source it builds
        real(argv, lib, cancelled)

    monkeypatch.setattr(build, "_run_compiler", no_libmvec)
    start = dl.random(2000, seed=1)
    kw = dict(optimizer="adam", lr=0.02, steps=150, dim=3, record="final", dtype="float64")
    c = dl.descend("rastrigin", start, engine="compiled", **kw)
    e = dl.descend("rastrigin", start, engine="eager", **kw)
    assert c.meta["kernel"] == "c" and len(built) == 1 and "cos(" in built[0]
    assert len(list(tmp_path.glob("*.failed"))) == 1  # not tried again for the same source
    np.testing.assert_allclose(c.x, e.x, rtol=0, atol=1e-9)


def test_many_loops_are_built_at_once_and_then_loaded_not_built(tmp_path, monkeypatch):
    # a sweep's loops, built together (one compiler per core) before its blocks; each block
    # then finds its loop on disk
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for cache in ("_KERNELS", "_CHECKED", "_SOURCES"):
        monkeypatch.setattr(kernels, cache, {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    real, threads = build._compile, set()

    def counted(text, lib, cancelled):
        threads.add(threading.get_ident())
        real(text, lib, cancelled)

    monkeypatch.setattr(build, "_compile", counted)
    settings = Settings.of(steps=20, limit=1e6, every=None)
    runs = [
        (functions.get(name), optimizers.resolve(opt, 0.01))
        for name in ("sphere", "himmelblau")
        for opt in ("gd", "adam")
    ]
    engine.prebuild([engine.Spec.of(*r, 2, torch.float32, "cpu", settings) for r in runs])
    assert len(list(tmp_path.glob("*.so"))) == 4
    assert threads and threading.get_ident() not in threads  # built off this thread

    def refuse(*args):
        raise AssertionError("built again")

    monkeypatch.setattr(build, "_compile", refuse)
    start = dl.grid(5, bounds=(-3, 3))
    for obj, plan in runs:
        kw = dict(optimizer=plan.name, lr=0.01, steps=20, tol=None)  # (as the prebuilt ones)
        c = dl.descend(obj.name, start, engine="compiled", **kw)
        e = dl.descend(obj.name, start, engine="eager", **kw)
        assert c.meta["kernel"] == "c"
        np.testing.assert_allclose(c.x, e.x, rtol=1e-5, atol=1e-6)


def test_calls_last_about_a_fifth_of_a_second_and_at_least_8_iterations_of_a_huge_batch():
    # the progress bar and Ctrl-C are seen between calls; a call loads and stores every point
    # once, which for a huge batch costs as much as an iteration
    assert c_run.call_steps(0.01, 10) == 200  # 1 ms an iteration: 0.2 s
    assert c_run.call_steps(0.06, 2) == 8  # 30 ms: 8 of them, 0.24 s
    assert c_run.call_steps(0.25, 1) == 4  # 250 ms: at most 1 s
    assert c_run.call_steps(3.0, 1) == 1  # one is the least


def test_ctrl_c_stops_the_c_loop_between_calls(monkeypatch):
    import contextlib

    from descentlab.descent import loop as descent

    @contextlib.contextmanager
    def first_check_interrupts():
        yield lambda: True

    kw = dict(start=dl.grid(6), lr=0.004, dtype="float64")
    dl.descend("himmelblau", steps=1, engine="compiled", **kw)  # built: interrupts are seen
    monkeypatch.setattr(descent, "interrupt_flag", first_check_interrupts)  # by the loop alone
    monkeypatch.setattr(c_run, "FIRST_CALL_WORK", 36 * 10)  # 36 points: 10 iterations
    run = dl.descend("himmelblau", steps=500, engine="compiled", **kw)
    assert run.meta["kernel"] == "c"
    assert (run.status == "interrupted").all() and (run.steps_ == run.iterations).all()
    assert run.iterations == 9 and run.path.shape[0] == 10
    np.testing.assert_array_equal(run.x, run.path[-1])
    monkeypatch.undo()
    shorter = dl.descend("himmelblau", steps=9, engine="eager", **kw)
    np.testing.assert_allclose(run.path, shorter.path, rtol=1e-12)
