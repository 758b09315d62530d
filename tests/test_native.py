"""The C backend of the compiled engine (`native`): what it translates equals autograd, what it
cannot translate it refuses (and the engine runs inductor instead), and its loop gives the eager
loop's results (the run-level comparisons live in test_compiled.py, parametrized over both
compilers)."""

import math
import pickle
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab import compiled, functions, native, optimizers, translate
from descentlab.gradients import Evaluator
from descentlab.problem import resolve


def objective(f, d=None):
    start = [[0.5] * d] if d else [[0.5]]
    return resolve(f, start, dim=d, dtype=torch.float64, device="cpu", need_grad=True).objective


def kernel(obj, dtype=torch.float64, kind="gd"):
    return native.kernel(obj, kind, False, obj.dim, dtype, math.inf, False, True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_registered_function_is_translated_and_equals_autograd(dtype):
    # native.kernel checks its values and gradients against autograd's over the domain before
    # it hands the kernel out; here, at other points, and in 2 and 5 dimensions where it can
    gen = torch.Generator().manual_seed(5)
    for name, spec in functions.REGISTRY.items():
        for d in (2, 5) if spec.any_dim else (None,):
            obj = functions.get(name, dim=d)
            d = obj.dim
            made = kernel(obj, dtype)
            lo, hi = (torch.tensor(b, dtype=torch.float64) for b in zip(*obj.domain, strict=True))
            x = (lo + torch.rand(200, d, generator=gen, dtype=torch.float64) * (hi - lo)).to(dtype)
            want_v, want_g = Evaluator(obj)(x)
            got_v, got_g = made.evaluate(x)
            scale = float(want_g.abs().max()) + 1
            tol = 1e-4 if dtype == torch.float32 else 1e-11
            np.testing.assert_allclose(got_v, want_v, rtol=tol, atol=tol, err_msg=name)
            np.testing.assert_allclose(got_g, want_g, atol=tol * scale, err_msg=name)


def test_powers_round_as_torch_does():
    # torch computes x**2 as x*x, x**3 as x*x*x, x**-1 as 1/x ...: the C must too, or the two
    # engines part after a few steps
    x = torch.linspace(0.1, 7.0, 301, dtype=torch.float32)[:, None]
    for e in (0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5):
        obj = objective(lambda t, e=e: t[..., 0] ** e)
        got_v, got_g = kernel(obj, torch.float32).evaluate(x)
        want_v, want_g = Evaluator(obj)(x)
        if e in (0.5, -0.5, 2.5):
            # x**0.5 is torch.sqrt, which here rounds 44 of these 301 square roots an ulp
            # away from IEEE's (C's) correctly rounded one; x**2.5 is powf against Sleef's pow
            np.testing.assert_allclose(got_v, want_v, rtol=2.5e-7, err_msg=str(e))
        else:
            assert torch.equal(got_v, want_v), e
        np.testing.assert_allclose(got_g, want_g, rtol=1e-6, err_msg=str(e))


@pytest.mark.parametrize(
    "f",
    [
        lambda x: torch.addcmul(x[..., 0], x[..., 1], x[..., 2], value=0.3),
        lambda x: torch.addcmul(x[..., 0], x[..., 1], x[..., 2]),
        lambda x: torch.lerp(x[..., 0], x[..., 1], 0.1),
        lambda x: torch.lerp(x[..., 0], x[..., 1], 0.7),  # torch's other formula
        lambda x: x[..., 0].add(x[..., 1], alpha=0.37),
        lambda x: x[..., 0].sub(x[..., 1], alpha=0.37),
        lambda x: torch.rsub(x[..., 0], x[..., 1], alpha=0.37),
        lambda x: torch.addcdiv(x[..., 0], x[..., 1], x[..., 2], value=-0.3),
    ],
)
def test_fused_operations_round_as_torch_does(f):
    # torch's CPU kernels fuse the multiply into the add (one rounding, where the CPU has an
    # FMA): the C must too, to the bit (twice-rounded, these differ on 2-20 % of the points)
    obj = dl.Objective(fn=f, dim=3)
    x = torch.randn(4000, 3, generator=torch.Generator().manual_seed(2)) * 3
    got_v, got_g = kernel(obj, torch.float32).evaluate(x)
    want_v, want_g = Evaluator(obj)(x)
    assert torch.equal(got_v, want_v)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-6)


def test_integer_arithmetic_with_alpha_stays_integer():
    # in a float32 kernel an fma would take these int64s through float (5e7 needs 26 bits)
    def f(x):
        k = (x[..., 0] * 1e8).floor().to(torch.int64) + 1
        return k.add(k, alpha=5).to(x.dtype) + x[..., 1] ** 2

    obj = dl.Objective(fn=f, dim=2)
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(3))
    got_v, _ = kernel(obj, torch.float32).evaluate(x)
    assert torch.equal(got_v, Evaluator(obj)(x)[0])


def test_literals_are_exact():
    for value in (0.1, -2.5, 1e-30, 3.4e38, math.pi):
        for dtype in (torch.float32, torch.float64):
            text = translate.literal(value, dtype)
            want = float(torch.tensor(value, dtype=dtype))
            assert float.fromhex(text.strip("()").rstrip("f")) == want
    assert translate.literal(math.inf, torch.float32) == "((float)INFINITY)"
    assert translate.literal(-math.inf, torch.float64) == "(-(double)INFINITY)"
    assert translate.literal(math.nan, torch.float64) == "((double)NAN)"


M = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.5]])


@pytest.mark.parametrize(
    "f",
    [
        # atanh's gradient fills a fresh tensor with ones, then subtracts x**2 from it in place
        lambda x: torch.atanh(0.3 * x[..., 0]) ** 2 + torch.acosh(2 + x[..., 1] ** 2),
        lambda x: torch.logsumexp(x, -1),
        lambda x: x.abs().amax(-1) + x.mean(-1) ** 2,  # amax's gradient counts ties (int sum)
        lambda x: (x @ M.to(x.dtype) * x).sum(-1),  # mm
        lambda x: torch.einsum("ni,ij,nj->n", x, M.to(x.dtype), x),  # bmm
        lambda x: (torch.softmax(x, -1) * torch.tensor([1.0, 2.0, 3.0])).sum(-1),
        lambda x: -torch.log_softmax(x, -1)[..., 1],
        lambda x: torch.linalg.vector_norm(x, dim=-1) + x.norm(p=1, dim=-1),
        lambda x: torch.cat([x, x**2], -1).prod(-1) + torch.cumsum(x, -1)[..., -1] ** 2,
        lambda x: torch.where(x[..., 0] > 0, x[..., 0] ** 2, -x[..., 0]) + torch.relu(x).sum(-1),
    ],
)
def test_more_of_torch_is_translated_and_equals_autograd(f):
    obj = dl.Objective(fn=f, dim=3)
    made = kernel(obj, torch.float64)
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want_v, want_g = Evaluator(obj)(x)
    got_v, got_g = made.evaluate(x)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    ("f", "why"),
    [
        # control flow on the values (which needs a number from all the points): the trace
        # would hold one branch only
        (lambda x: x[..., 0] ** 2 if float(x.detach().sum()) > 0 else x[..., 0], "points"),
        # points that see each other: the descents would not be independent
        (lambda x: ((x - x.mean(0)) ** 2).sum(-1), "points"),
        # an operation the translator does not know
        (lambda x: torch.lgamma(x[..., 0] + 3), "lgamma"),
        # a matrix product over the points (each point's value from all of them)
        (lambda x: (x.T @ x).sum() + x[..., 0], "points"),
        # an in-place write into a view
        (lambda x: x.clone().select(-1, 0).mul_(2) ** 2, "view"),
    ],
)
def test_what_cannot_be_translated_is_refused(f, why):
    with pytest.raises(native.Unsupported, match=why):
        kernel(dl.Objective(fn=f, dim=2))  # as is: `descend` would refuse the mixing one


def test_a_wrong_translation_is_caught_before_it_runs(monkeypatch):
    # the check against autograd is the net under the translator: a mistranslated
    # multiplication must never reach a run
    monkeypatch.setitem(translate._POINTWISE, "mul", "({a}) + ({b})")
    with pytest.raises(native.Unsupported, match="disagrees with autograd"):
        kernel(objective(lambda x: x[..., 0] * x[..., 1] + x[..., 0] ** 3, 2))


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
    assert {"running", "converged", "diverged"} <= set(c.status)
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
    assert list(c.status) == list(e.status) == ["running"] * 3
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
from descentlab import native
def refuse(*args):
    raise AssertionError("compiled again")
native._compile = refuse
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
    monkeypatch.setattr(native, "_KERNELS", {})
    monkeypatch.setattr(native, "_LIBRARIES", {})
    monkeypatch.setattr(native, "_CHECKED", {})
    formula = "(x**2 + y - 11)**2 + (x + y**2 - 7)**2 + 0.25*x"
    dl.descend(formula, dl.grid(4, bounds=(-4, 4)), steps=3, record="final", engine="compiled")
    assert len(list(tmp_path.glob("c/*.so"))) == 1
    # a fresh process: 400 points x 500 steps take 0.16 s eager, less than a build (0.56 s),
    # more than loading what is built
    done = subprocess.run(
        [sys.executable, "-c", LATER, formula], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["compiled", "c", "False"], done.stderr[-2000:]


def test_the_c_loop_is_used_only_on_the_cpu_and_can_be_turned_off(monkeypatch):
    obj, plan = functions.get("sphere"), optimizers.resolve("gd", 0.1)
    assert compiled.c_kernel(obj, plan, 2, torch.float32, "cpu", math.inf, None, False) is not None
    assert compiled.c_kernel(obj, plan, 2, torch.float32, "meta", math.inf, None, False) is None
    monkeypatch.setattr(compiled, "USE_C", False)
    assert compiled.c_kernel(obj, plan, 2, torch.float32, "cpu", math.inf, None, False) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_run_is_compiled_by_inductor():
    run = dl.descend("himmelblau", dl.grid(8), steps=20, engine="compiled", device="cuda")
    assert run.meta["kernel"] == "inductor"


def test_without_libmvec_the_loop_is_built_on_scalar_math(tmp_path, monkeypatch):
    # macOS, musl and old glibc have no libmvec: the vector source fails to link there, and the
    # engine builds its twin that calls libm's scalar functions instead (simulated here by a
    # compiler that refuses the vector source); Rastrigin's cos then runs through libm
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for cache in ("_KERNELS", "_LIBRARIES", "_CHECKED", "_SOURCES"):
        monkeypatch.setattr(native, cache, {})
    built = []
    real = native._compile

    def no_libmvec(cc, text, folder, lib):
        if "#pragma omp declare simd" in text:
            raise native.Unsupported("the C compiler failed: cannot find -lmvec")
        built.append(text)
        real(cc, text, folder, lib)

    monkeypatch.setattr(native, "_compile", no_libmvec)
    start = dl.random(2000, seed=1)
    kw = dict(optimizer="adam", lr=0.02, steps=150, dim=3, record="final", dtype="float64")
    c = dl.descend("rastrigin", start, engine="compiled", **kw)
    e = dl.descend("rastrigin", start, engine="eager", **kw)
    assert c.meta["kernel"] == "c" and len(built) == 1 and "cos(" in built[0]
    assert len(list(tmp_path.glob("c/*.failed"))) == 1  # not tried again for the same source
    np.testing.assert_allclose(c.x, e.x, rtol=0, atol=1e-9)


def test_many_loops_are_built_at_once_and_then_loaded_not_built(tmp_path, monkeypatch):
    # a sweep's loops, built together (one compiler per core) before its blocks; each block
    # then finds its loop on disk
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for cache in ("_KERNELS", "_LIBRARIES", "_CHECKED", "_SOURCES"):
        monkeypatch.setattr(native, cache, {})
    real, threads = native._compile, set()

    def counted(cc, text, folder, lib):
        threads.add(threading.get_ident())
        real(cc, text, folder, lib)

    monkeypatch.setattr(native, "_compile", counted)
    setting = (2, torch.float32, "cpu", math.inf, None, False)  # c_kernel's, after the plan
    runs = [
        (functions.get(name), optimizers.resolve(opt, 0.01), *setting)
        for name in ("sphere", "himmelblau")
        for opt in ("gd", "adam")
    ]
    compiled.c_prebuild(runs)
    assert len(list(tmp_path.glob("c/*.so"))) == 4
    assert threads and threading.get_ident() not in threads  # built off this thread

    def refuse(*args):
        raise AssertionError("built again")

    monkeypatch.setattr(native, "_compile", refuse)
    start = dl.grid(5, bounds=(-3, 3))
    for obj, plan, *_ in runs:
        c = dl.descend(obj.name, start, optimizer=plan.name, lr=0.01, steps=20, engine="compiled")
        e = dl.descend(obj.name, start, optimizer=plan.name, lr=0.01, steps=20, engine="eager")
        assert c.meta["kernel"] == "c"
        np.testing.assert_allclose(c.x, e.x, rtol=1e-5, atol=1e-6)


def test_calls_last_about_a_fifth_of_a_second_and_at_least_8_iterations_of_a_huge_batch():
    # the progress bar and Ctrl-C are seen between calls; a call loads and stores every point
    # once, which for a huge batch costs as much as an iteration
    assert native.call_steps(0.01, 10) == 200  # 1 ms an iteration: 0.2 s
    assert native.call_steps(0.06, 2) == 8  # 30 ms: 8 of them, 0.24 s
    assert native.call_steps(0.25, 1) == 4  # 250 ms: at most 1 s
    assert native.call_steps(3.0, 1) == 1  # one is the least
