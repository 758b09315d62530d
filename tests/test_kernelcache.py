"""Packaged kernels (`descentlab.kernelcache`): what is kept, under which name, and that a later
process runs them without dynamo and with the results of the kernels torch.compile makes."""

import gc
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab import compiled, functions, kernelcache
from descentlab.formula import formula_objective
from descentlab.objective import Objective
from descentlab.optimizers import resolve
from descentlab.trajectory import CONVERGED

FORMULA = "(x - 1)**2 + 3*(y + 2)**2 + x*y"


def spec_of(objective, optimizer="gd", kernel=("plain", 4), dtype=torch.float32, **kw):
    settings = dict(d=2, dtype=dtype, device="cpu", order=2.0, box=None, tol_set=False)
    settings.update(kw)
    plan = resolve(optimizer, lr=0.01)
    return compiled._package_spec(objective, plan, kernel=kernel, **settings)


@pytest.fixture(autouse=True)
def inductor_only(monkeypatch):
    """These are inductor's packages: the compiled engine must not take the C loop first."""
    monkeypatch.setattr(compiled, "USE_C", False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    return tmp_path


def test_the_folder_follows_the_environment(monkeypatch, tmp_path):
    for off in ("off", "0", "OFF", " ", "none"):
        monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", off)
        assert kernelcache.directory() is None
        assert spec_of(functions.get("himmelblau")) is None  # nothing kept with the cache off
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path / "k"))
    assert kernelcache.directory() == tmp_path / "k"
    monkeypatch.delenv("DESCENTLAB_KERNEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kernelcache.directory() == tmp_path / "xdg" / "descentlab" / "kernels"


@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_only_objectives_a_new_process_can_rebuild_are_kept(cache):
    himmelblau = functions.get("himmelblau")
    assert spec_of(himmelblau)["objective"] == {"function": "himmelblau"}
    assert spec_of(formula_objective(FORMULA))["objective"] == {"formula": FORMULA}
    # a callable has no identity across processes, even one registered under a built-in's name
    assert spec_of(Objective(lambda x: (x**2).sum(-1), dim=2)) is None
    assert spec_of(Objective(lambda x: (x**2).sum(-1), dim=2, name="himmelblau")) is None
    assert spec_of(himmelblau, kernel=("record", 1)) is None  # writes the recorder's rows
    assert spec_of(himmelblau, device="cuda") is None


@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_every_setting_the_code_depends_on_names_another_package(cache, monkeypatch):
    himmelblau = functions.get("himmelblau")
    base = kernelcache.path(spec_of(himmelblau))
    variants = [
        spec_of(functions.get("booth")),
        spec_of(himmelblau, optimizer="adam"),
        spec_of(himmelblau, optimizer="nesterov"),
        spec_of(himmelblau, dtype=torch.float64),
        spec_of(himmelblau, order=float("inf")),
        spec_of(himmelblau, box=(torch.zeros(2), torch.ones(2))),
        spec_of(himmelblau, tol_set=True),
        spec_of(himmelblau, kernel=("flags", 4)),
        spec_of(himmelblau, kernel=("plain", 1)),
    ]
    names = {kernelcache.path(s) for s in variants}
    assert base not in names and len(names) == len(variants)
    threads = torch.get_num_threads()
    try:  # inductor writes the thread count into the kernel
        torch.set_num_threads(threads + 1)
        assert kernelcache.path(spec_of(himmelblau)) != base
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(kernelcache, "_CODE_HASH", "edited")  # descentlab's kernel code changed
    assert kernelcache.path(spec_of(himmelblau)) != base


started: list = []  # one entry per builder FakePopen started


class FakePopen:
    def __init__(self, argv, **kw):
        started.append(argv)
        assert argv[1:] == ["-m", "descentlab.kernelcache"] and kw["start_new_session"]

    def wait(self):
        return 0


def queued(folder):
    return sorted(json.loads(f.read_text())["out"] for f in folder.glob("*.lock"))


@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_missing_packages_are_queued_for_one_builder(cache, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    started.clear()
    himmelblau = functions.get("himmelblau")
    plain, flags = spec_of(himmelblau), spec_of(himmelblau, kernel=("flags", 4))
    assert kernelcache.build_later([plain, flags, None]) is not None
    assert len(started) == 1 and queued(cache) == ["flags", "plain"]
    assert kernelcache.pending([plain, flags]) == [plain, flags]
    assert not kernelcache.wait([plain], timeout=0.3)
    # while a builder holds the folder, more work joins its queue and starts no other builder
    (cache / "builder.pid").write_text(str(os.getpid()))
    booth = spec_of(functions.get("booth"))
    assert kernelcache.build_later([booth]) is None and len(started) == 1
    assert len(queued(cache)) == 3
    # a builder that died (its pid file gone stale) is replaced by the next run that needs it
    old = time.time() - kernelcache.STALE_LOCK_S - 60
    os.utime(cache / "builder.pid", (old, old))
    assert kernelcache.build_later([plain]) is not None and len(started) == 2
    # one on disk is not rebuilt; one whose build failed is not queued again
    for f in cache.glob("*.lock"):
        f.unlink()
    kernelcache.path(plain).write_bytes(b"")
    kernelcache.path(flags).with_suffix(".failed").write_text("Traceback ...")
    assert kernelcache.build_later([plain, flags]) is None and not queued(cache)
    assert kernelcache.wait([plain, flags], timeout=0)


def test_the_builder_process_is_reaped_without_a_warning(cache, monkeypatch):
    # the builder outlives nothing here: a short stand-in is started the way build_later
    # starts it; a thread waits for it, so no zombie is left and the Popen is not collected
    # while "still running" (a ResourceWarning, an error under pytest's filterwarnings)
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda argv, **kw: real(["sleep", "0.2"], **kw))
    builder = kernelcache.build_later([spec_of(functions.get("himmelblau"))])
    assert builder is not None and builder.returncode is None
    deadline = time.monotonic() + 10
    while builder.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)  # (only the reaper sets returncode: nothing here polls)
    assert builder.returncode == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del builder
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_the_builder_empties_its_queue_and_notes_failures(cache, monkeypatch):
    himmelblau = functions.get("himmelblau")
    good, bad = spec_of(himmelblau), spec_of(himmelblau, optimizer="adam")
    assert kernelcache._queue(good) and kernelcache._queue(bad)
    assert not kernelcache._queue(good)  # queued once
    built = []

    def build(spec):
        if spec["kind"] == "adam":
            raise RuntimeError("no C++ compiler")
        built.append(spec)
        kernelcache.path(spec).write_bytes(b"")

    monkeypatch.setattr(kernelcache, "build", build)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert kernelcache.main() == 1  # one failed
    assert built == [good] and kernelcache.available(good) and not kernelcache.available(bad)
    assert not kernelcache.pending([good, bad]) and not (cache / "builder.pid").exists()
    assert "no C++ compiler" in kernelcache.path(bad).with_suffix(".failed").read_text()
    # a second builder finds the folder held and leaves
    kernelcache._queue(spec_of(functions.get("booth")))
    (cache / "builder.pid").write_text(str(os.getpid()))
    assert kernelcache.main() == 0 and len(queued(cache)) == 1


@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_a_damaged_package_is_removed_and_compiled_instead(cache):
    s = spec_of(functions.get("himmelblau"))
    kernelcache.path(s).write_bytes(b"PK\x03\x04 not a package")
    assert kernelcache.load(s, 0, lambda: None) is None
    assert not kernelcache.path(s).exists()


@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_auto_counts_packages_on_disk_as_compiled(cache):
    himmelblau = functions.get("himmelblau")
    plan = resolve("gd", lr=0.01)
    args = (himmelblau, plan, 1000, 100, 2, torch.float32, "cpu", 2.0, None)
    assert not compiled.worth_compiling(*args)  # 1e5 point-steps: eager, without packages
    for kernel in compiled._kernels(None):
        kernelcache.path(spec_of(himmelblau, kernel=kernel)).write_bytes(b"")
    assert compiled.worth_compiling(*args)
    assert not compiled.worth_compiling(himmelblau, plan, 1, *args[3:])  # N >= 2 only


# about half the points converge (tol) inside a fused call: they are replayed
RUN = dict(optimizer="adam", lr=0.2, steps=60, tol=0.1, record="final", dtype="float64")
FRESH = r"""
import json, sys, numpy as np, torch, descentlab as dl
from descentlab import compiled
compiled.USE_C = False  # inductor's packages, not the C loop
kw = json.loads(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))  # packages are built for a thread count
run = dl.descend(sys.argv[1], dl.grid(20, ((-4, 4), (-4, 4))), engine="auto", **kw)
np.savez(sys.argv[2], x=run.x_, v=run.value_, gn=run.grad_norm_, status=run.status_,
         steps=run.steps_)
print(run.meta["engine"], "torch._dynamo" in sys.modules)
if run.meta["engine"] != "compiled":  # what this process looked for, to tell why
    from descentlab import compiled, formula, optimizers
    plan = optimizers.resolve(kw["optimizer"], lr=kw["lr"])
    f = formula.formula_objective(sys.argv[1])
    for k in compiled._kernels(None):
        s = compiled._package_spec(f, plan, 2, torch.float64, "cpu", 2.0, None, True, k)
        print(json.dumps(s), file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.skipif(not kernelcache.supported(), reason="this torch has no AOTInductor loader")
def test_a_later_process_runs_the_packages_without_dynamo(cache, monkeypatch, tmp_path):
    # this process compiles with torch.compile and would start the build in the background:
    # build here instead, and check the packages against the kernels torch.compile made
    asked = []
    monkeypatch.setattr(kernelcache, "build_later", asked.extend)
    threads = torch.get_num_threads()
    monkeypatch.setattr(compiled, "_CACHE", {})
    start = dl.grid(20, ((-4, 4), (-4, 4)))
    here = dl.descend(FORMULA, start, engine="compiled", **RUN)
    assert len(asked) == 2 and {s["out"] for s in asked} == {"plain", "flags"}
    x = torch.randn(2, 300, dtype=torch.float64)
    state = (x.abs(), x * x)
    lo = hi = torch.zeros(1, dtype=torch.float64)
    for s in asked:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # as the builder under PYTHONWARNINGS=error
            kernelcache.build(s)
        kernel = next(k for key, k in compiled._CACHE.items() if key[-2:] == (s["out"], 4))
        calls = []

        def fallback(calls=calls):  # stands in for the torch.compile kernel
            return lambda *args: calls.append(args) or "compiled"

        ours = kernelcache.load(s, 2, fallback)
        packed = torch.rand(len(compiled.HYPER) + 2 + 12, dtype=torch.float64)
        packed[len(compiled.HYPER) + 1] = 3.0  # blow-up limit: some points are out of the box
        outs = (ours(x, state, packed, lo, hi), kernel(x, state, packed, lo, hi))
        assert len(outs[0]) == len(outs[1]) == (2 if s["out"] == "plain" else 6)
        for a, b in zip(*outs, strict=True):
            flat_a = torch.cat([t.flatten() for t in a]) if isinstance(a, tuple) else a
            flat_b = torch.cat([t.flatten() for t in b]) if isinstance(b, tuple) else b
            torch.testing.assert_close(flat_a, flat_b, rtol=0, atol=0, equal_nan=True)
        # exported for N >= 2: a single point goes to the torch.compile kernel (made once)
        assert not calls
        one = (x[:, :1], (x[:, :1],) * 2, packed, lo, hi)
        assert ours(*one) == ours(*one) == "compiled" and len(calls) == 2
    # a fresh process: auto takes the packages for 400 points x 60 steps (eager otherwise)
    out = tmp_path / "fresh.npz"
    done = subprocess.run(
        [sys.executable, "-c", FRESH, FORMULA, str(out), json.dumps(RUN), str(threads)],
        capture_output=True,
        text=True,
        # warnings as errors: loading the packages and the replay must not trip on torch's
        env={**os.environ, "DESCENTLAB_KERNEL_CACHE": str(cache), "PYTHONWARNINGS": "error"},
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["compiled", "False"], (done.stderr[-3000:], asked)
    fresh = np.load(out)
    eager = dl.descend(FORMULA, start, engine="eager", **RUN)
    assert (eager.status_ == CONVERGED).sum() > 100  # the replay ran (autograd, no dynamo)
    for name, ours, theirs in (
        ("x", fresh["x"], eager.x_),
        ("v", fresh["v"], eager.value_),
        ("gn", fresh["gn"], eager.grad_norm_),
        ("x here", here.x_, eager.x_),
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, err_msg=name)
    assert np.array_equal(fresh["status"], eager.status_)
    assert np.array_equal(fresh["steps"], eager.steps_)
