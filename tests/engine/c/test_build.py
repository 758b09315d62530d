"""The C loop's cache never breaks a run (`engine.c.build`): a damaged, truncated or foreign
library is found before it is loaded and built again; an unusable cache folder falls back to a
private one with a note; a compiler that hangs is stopped; Ctrl-C during a build stops the run;
only the compiler's own refusal is remembered; nothing temporary is left behind."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import descentlab as dl
from descentlab import engine
from descentlab.descent.loop import Settings
from descentlab.descent.optimizers import resolve
from descentlab.engine.c import build, kernels
from descentlab.problem.resolve import resolve as resolve_problem

# a formula of these tests' own, so no other test has built its loop
FORMULA = "(x - 0.25)**2 + 3*(y + 0.5)**2 + 0.125*x*y"
RUN = r"""
import sys, descentlab as dl
run = dl.descend(sys.argv[1], dl.grid(6, bounds=(-2, 2)), lr=0.05, steps=40, engine="compiled")
print(run.meta["kernel"], float(run.x[:, 0].sum()))
"""


def fresh_process(cache: Path, *extra_env: tuple[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "DESCENTLAB_KERNEL_CACHE": str(cache), **dict(extra_env)}
    return subprocess.run(
        [sys.executable, "-c", RUN, FORMULA], capture_output=True, text=True, timeout=120, env=env
    )


def spec_for(formula: str = FORMULA) -> engine.Spec:
    start = [[0.5, 0.5]]
    objective = resolve_problem(
        formula, start, dim=None, dtype=torch.float32, device="cpu", need_grad=True
    ).objective
    settings = Settings.of(steps=10, limit=1e6, every=None)
    return engine.Spec.of(objective, resolve("gd", 0.1), 2, torch.float32, "cpu", settings)


@pytest.fixture
def empty(monkeypatch, tmp_path):
    """A cache folder of its own, and nothing built in this process."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(cache))
    for name in ("_KERNELS", "_SOURCES", "_CHECKED"):
        monkeypatch.setattr(kernels, name, {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    return cache


def fake_compiler(folder: Path, body: str) -> Path:
    """A `$CC` that runs `body` (bash) and records each call and its pid in `folder`."""
    script = folder / "cc"
    script.write_text(f'#!/bin/bash\necho $$ >> "{folder}/calls"\n{body}\n')
    script.chmod(0o755)
    return script


def libraries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.so"))


def test_a_truncated_library_is_built_again_not_loaded(tmp_path):
    cache = tmp_path / "cache"
    first = fresh_process(cache)
    assert first.returncode == 0 and first.stdout.split()[0] == "c", first.stderr[-2000:]
    (lib,) = libraries(cache)
    whole = lib.read_bytes()
    lib.write_bytes(whole[: len(whole) // 2])  # as a crash or a full disk mid-write leaves it
    again = fresh_process(cache)
    assert again.returncode == 0, again.stderr[-2000:]  # it was SIGBUS (exit 135)
    assert again.stdout == first.stdout  # the C loop, the same numbers
    assert lib.read_bytes() == whole  # rebuilt


def test_a_library_with_a_missing_digest_or_a_foreign_one_is_built_again(tmp_path):
    cache = tmp_path / "cache"
    first = fresh_process(cache)
    assert first.returncode == 0, first.stderr[-2000:]
    (lib,) = libraries(cache)
    whole = lib.read_bytes()
    lib.with_suffix(".sum").unlink()  # a library from before digests, or half published
    assert fresh_process(cache).stdout == first.stdout and lib.read_bytes() == whole
    # a foreign library, with a digest that matches it, but not the loop's symbols
    foreign = tmp_path / "foreign.c"
    foreign.write_text("int something_else(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", str(foreign), "-o", str(lib)], check=True)
    lib.with_suffix(".sum").write_text(__import__("json").dumps(build._digest(lib)))
    again = fresh_process(cache)
    assert again.returncode == 0, again.stderr[-2000:]  # it was an AttributeError traceback
    assert again.stdout == first.stdout and lib.read_bytes() == whole


@pytest.mark.parametrize("kind", ["a file", "unwritable"])
def test_an_unusable_cache_folder_falls_back_to_a_private_one_with_a_note(tmp_path, kind):
    if kind == "a file":
        cache = tmp_path / "cache"
        cache.write_text("not a folder")
    else:  # even root cannot make a folder here
        cache = Path("/proc/self/descentlab-cache")
    done = fresh_process(cache)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "c"
    notes = [line for line in done.stderr.splitlines() if "kernel cache" in line]
    assert len(notes) == 1 and "not usable" in notes[0] and "temporary folder" in notes[0]


def test_a_full_disk_while_publishing_falls_back_and_is_not_remembered(empty, monkeypatch):
    real = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).startswith(str(empty)):
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    with pytest.warns(UserWarning, match="kernel cache .* not usable .*No space left"):
        made = kernels.kernel(spec_for())
    assert made is not None
    assert not list(empty.glob("*.failed")) and not list(empty.glob("*.so"))
    assert not [p for p in empty.iterdir() if p.name.startswith(".build-")]  # cleaned up


def test_a_compiler_that_fails_for_lack_of_space_is_asked_again_next_time(empty, tmp_path):
    cc = fake_compiler(
        tmp_path, 'echo "cc1: fatal error: kernel.s: No space left on device" >&2; exit 1'
    )
    os.environ["CC"] = str(cc)
    try:
        for _ in range(2):
            with pytest.raises(kernels.Unsupported, match="No space left") as caught:
                kernels.kernel(spec_for())
            assert not caught.value.lasting
    finally:
        del os.environ["CC"]
    assert len((tmp_path / "calls").read_text().split()) >= 2  # asked each time
    assert not list(empty.glob("*.failed"))


def test_the_compilers_own_refusal_is_remembered(empty, tmp_path):
    cc = fake_compiler(tmp_path, 'echo "kernel.c:1:1: error: unknown type name" >&2; exit 1')
    os.environ["CC"] = str(cc)
    try:
        with pytest.raises(kernels.Unsupported, match="unknown type name") as caught:
            kernels.kernel(spec_for())
        assert caught.value.lasting
        calls = len((tmp_path / "calls").read_text().split())
        for name in ("_KERNELS", "_CHECKED"):  # as a new process: only the disk remembers
            getattr(kernels, name).clear()
        build._LIBRARIES.clear()
        with pytest.raises(kernels.Unsupported, match="unknown type name"):
            kernels.kernel(spec_for())
        assert len((tmp_path / "calls").read_text().split()) == calls  # not asked again
    finally:
        del os.environ["CC"]
    assert len(list(empty.glob("*.failed"))) >= 1


def test_a_compiler_that_hangs_is_stopped_and_not_remembered(empty, tmp_path, monkeypatch):
    cc = fake_compiler(tmp_path, "sleep 60")
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setattr(build, "BUILD_TIMEOUT_S", 0.5)
    began = time.monotonic()
    with pytest.raises(kernels.Unsupported, match="did not finish in 0.5 s") as caught:
        kernels.kernel(spec_for())
    assert time.monotonic() - began < 10 and not caught.value.lasting
    for pid in (tmp_path / "calls").read_text().split():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)  # killed, with its children
    assert not list(empty.glob("*.failed"))
    assert not [p for p in empty.iterdir() if p.name.startswith(".build-")]
    # a run under `compiled` goes on without the C loop, and says why
    monkeypatch.setenv("DESCENTLAB_C_LOOP", "on")
    with pytest.warns(UserWarning, match="C loop unavailable this time .*did not finish"):
        assert engine.c_kernel(spec_for()) is None


def _zombie(pid: str) -> bool:
    with contextlib.suppress(OSError):
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    return True


def test_ctrl_c_during_a_build_stops_the_run_at_its_start(empty, tmp_path, monkeypatch):
    from descentlab.descent import loop as descent

    cc = fake_compiler(tmp_path, "sleep 60")
    monkeypatch.setenv("CC", str(cc))
    pressed = time.monotonic() + 0.5

    @contextlib.contextmanager
    def ctrl_c_after_half_a_second():
        yield lambda: time.monotonic() > pressed

    monkeypatch.setattr(descent, "interrupt_flag", ctrl_c_after_half_a_second)
    began = time.monotonic()
    run = dl.descend(FORMULA, dl.grid(4, bounds=(-1, 1)), steps=100, engine="compiled")
    assert time.monotonic() - began < 10
    assert (run.status == "interrupted").all() and run.iterations == 0
    assert run.path.shape[0] == 1  # the start, evaluated
    assert not list(empty.glob("*.failed")) and not list(empty.glob("*.so"))
    assert not [p for p in empty.iterdir() if p.name.startswith(".build-")]


CTRL_C = r"""
import sys, descentlab as dl
run = dl.descend(sys.argv[1], dl.grid(4, bounds=(-1, 1)), steps=100, engine="compiled")
print(run.status[0], run.iterations, flush=True)
"""


def test_a_real_ctrl_c_during_a_build_is_not_swallowed(tmp_path):
    # the first SIGINT sets the run's interrupt flag (descend's own handler): the build sees it
    cc = fake_compiler(tmp_path, "sleep 60")
    env = {**os.environ, "CC": str(cc), "DESCENTLAB_KERNEL_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, FORMULA],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "calls").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "calls").exists(), "the compiler never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert out.split() == ["interrupted", "0"]


def test_what_killed_builds_left_is_removed_by_the_next_build(empty):
    empty.mkdir(parents=True)
    dead = empty / ".build-999999999-x"  # no process has this pid
    dead.mkdir()
    (dead / "kernel.so").write_bytes(b"")
    alive = empty / f".build-{os.getpid()}-y"  # a build of a running process: kept
    alive.mkdir()
    old = empty / ".tmp-abc"
    old.write_text("")
    os.utime(old, (time.time() - 2 * build._STALE_S,) * 2)
    kernels.kernel(spec_for())
    assert not dead.exists() and not old.exists() and alive.exists()
    assert sorted(p.suffix for p in empty.iterdir() if not p.name.startswith(".")) == [
        ".so",
        ".sum",
    ]


def test_the_cache_keeps_the_most_recently_used_libraries_within_its_bound(empty, monkeypatch):
    empty.mkdir(parents=True)
    now = time.time()
    for age, name in enumerate(["newest", "middle", "oldest"]):
        lib = empty / f"{name}.so"
        lib.write_bytes(b"x" * 600_000)
        (empty / f"{name}.sum").write_text("{}")
        os.utime(lib, (now - 100 * (age + 1),) * 2)
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE_MB", "1")
    kernels.kernel(spec_for())  # a new build, 1 MB allowed: the oldest two go
    names = sorted(p.stem for p in libraries(empty))
    assert "newest" in names and "middle" not in names and "oldest" not in names
    assert len(names) == 2 and not (empty / "oldest.sum").exists()
    # a library loaded from disk counts as used: it outlives an older one
    fresh = libraries(empty)[0] if libraries(empty)[0].stem != "newest" else libraries(empty)[1]
    os.utime(fresh, (now - 1000,) * 2)
    monkeypatch.setattr(build, "_LIBRARIES", {})
    for name in ("_KERNELS", "_SOURCES", "_CHECKED"):
        monkeypatch.setattr(kernels, name, {})
    kernels.kernel(spec_for())
    assert fresh.stat().st_mtime > now - 10
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE_MB", "0")
    build.trim(empty, keep=fresh)  # the one in use stays, whatever the bound
    assert libraries(empty) == [fresh]
