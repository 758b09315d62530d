"""The engine's choice (`descentlab.engine`): what cannot be compiled is refused or left eager,
`auto` compiles only when it pays, and every failure falls back with a note."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab import engine
from descentlab.descent.loop import Settings
from descentlab.descent.optimizers import resolve
from descentlab.engine.c import build, kernels
from descentlab.engine.inductor import loop as inductor_loop
from descentlab.problem.functions import get


def spec_of(name="himmelblau", optimizer="gd"):
    settings = Settings.of(steps=100, limit=1e6, every=None)
    return engine.Spec.of(get(name), resolve(optimizer, 0.01), 2, torch.float32, "cpu", settings)


@pytest.fixture
def nothing_built(monkeypatch, tmp_path):
    """No kernel in this process or on disk: as a new machine would be."""
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for name in ("_KERNELS", "_SOURCES", "_CHECKED"):
        monkeypatch.setattr(kernels, name, {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    monkeypatch.setattr(inductor_loop, "_CACHE", {})
    return tmp_path


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


def test_the_spec_names_named_objectives_and_not_callables():
    assert spec_of().key == spec_of().key and spec_of().key != spec_of(optimizer="adam").key
    assert spec_of().named == ("function", "himmelblau")
    formula = dl.descend("x**2 + y**2", (1.0, 1.0), steps=1).objective
    settings = Settings.of(steps=1, limit=1e6, every=None)
    plan = resolve("gd", 0.1)
    named = engine.Spec.of(formula, plan, 2, torch.float32, "cpu", settings).named
    assert named == ("formula", "x**2 + y**2")
    callable_run = dl.descend(lambda x: (x**2).sum(-1), (1.0, 1.0), steps=1).objective
    assert engine.Spec.of(callable_run, plan, 2, torch.float32, "cpu", settings).key is None


def test_auto_compiles_only_when_it_pays(monkeypatch, nothing_built):
    spec = spec_of()
    # in a process where eager has not run, its first optimizer imports dynamo (about a
    # second): even a 10-step run is worth a build then
    monkeypatch.setattr(engine, "dynamo_imported", lambda: False)
    assert engine.worth_compiling(spec, 1, 10)
    # but a sweep deciding for its many (function, optimizer) pairs pays the import only once
    assert not engine.worth_compiling(spec, 1, 10, single=False)
    monkeypatch.setattr(engine, "dynamo_imported", lambda: True)  # eager has run here
    # 1e5 point-steps: eager is quicker than loading a built C loop
    assert not engine.worth_compiling(spec, 1_000, 100)
    assert kernels.readiness(spec) > 0.3
    # 1e6 point-steps: less than a build; 1e8: more
    assert not engine.worth_compiling(spec, 10_000, 100)
    assert engine.worth_compiling(spec, 1_000_000, 100)
    assert dl.descend("himmelblau", dl.grid(100), steps=100, tol=None).meta["engine"] == "eager"
    # built on disk (by a compiled run, here, whose process has it too), it pays from 1e6
    dl.descend("himmelblau", dl.grid(10), steps=5, tol=None, engine="compiled", record="final")
    assert list(nothing_built.glob("*.so")) and list(nothing_built.glob("*.sum"))
    assert kernels.readiness(spec) == 0
    for name in ("_KERNELS", "_CHECKED"):  # as a new process would see it
        monkeypatch.setattr(kernels, name, {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    assert kernels.readiness(spec) == kernels.LOAD_SECONDS
    assert engine.worth_compiling(spec, 10_000, 100)
    assert not engine.worth_compiling(spec, 1_000, 100)
    # and once this process has it, every run uses it, whatever it records
    run = dl.descend("himmelblau", dl.grid(100), steps=100, tol=None)
    assert run.meta["engine"] == "compiled" and run.meta["kernel"] == "c"
    assert engine.worth_compiling(spec, 10, 10)


def test_auto_compiles_with_inductor_only_when_it_pays(monkeypatch, nothing_built):
    monkeypatch.setenv("DESCENTLAB_C_LOOP", "off")
    spec = spec_of()
    assert not engine.worth_compiling(spec, 10_000, 100)
    assert engine.worth_compiling(spec, 10_000_000, 100)
    assert dl.descend("himmelblau", dl.grid(100), steps=100).meta["engine"] == "eager"
    # once its steps are compiled, even a small run uses them
    dl.descend("himmelblau", dl.grid(10), steps=5, engine="compiled", record="final")
    assert dl.descend("himmelblau", dl.grid(100), steps=100).meta["engine"] == "eager"
    assert dl.descend("himmelblau", dl.grid(100), record="final").meta["engine"] == "compiled"


def test_the_c_loop_is_used_only_on_the_cpu_and_can_be_turned_off(monkeypatch):
    assert engine.c_enabled(spec_of())
    monkeypatch.setenv("DESCENTLAB_C_LOOP", "off")
    assert not engine.c_enabled(spec_of())
    assert engine.c_kernel(spec_of()) is None
    monkeypatch.delenv("DESCENTLAB_C_LOOP")
    cuda = engine.Spec(get("himmelblau"), "gd", False, 2, torch.float32, device="cuda:0")
    assert not engine.c_enabled(cuda)


def test_a_failed_compile_falls_back_to_eager_with_a_note(monkeypatch, nothing_built):
    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler")

    monkeypatch.setenv("DESCENTLAB_C_LOOP", "off")
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
run = dl.descend("himmelblau", dl.grid(8), steps=30, tol=1e-3, engine="compiled")
print(run.meta["engine"], run.meta["kernel"], "torch._inductor" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["c", "inductor"])
def test_warnings_as_errors_do_not_stop_the_compile(kernel, tmp_path):
    # importing inductor warns that torch.jit.script_method is deprecated: under -W error (or
    # pytest's filterwarnings = error) that became a fallback, and the fallback's note an error
    env = {
        **os.environ,
        "DESCENTLAB_C_LOOP": "on" if kernel == "c" else "off",
        "DESCENTLAB_KERNEL_CACHE": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", WARNINGS_AS_ERRORS],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = str(kernel == "inductor")  # the C loop needs neither dynamo nor inductor
    assert done.stdout.split() == ["compiled", kernel, imported], done.stderr[-2000:]


def test_a_compiled_run_starts_nothing_that_outlives_it_and_leaves_no_temporary_files(tmp_path):
    # when the run returns, the process has no child still running (the AOTInductor cache
    # that was here started a builder that compiled for a minute after the script ended)
    code = (
        "import glob, os, descentlab as dl\n"
        "dl.descend('x**2 + 3*y**2', dl.grid(20, bounds=(-2, 2)), steps=50, engine='compiled')\n"
        "tasks = glob.glob(f'/proc/{os.getpid()}/task/*/children')\n"
        "print(sum(len(open(t).read().split()) for t in tasks))\n"
    )
    env = {**os.environ, "DESCENTLAB_KERNEL_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "0"
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".so", ".sum"]
