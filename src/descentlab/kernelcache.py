"""The compiled engine's kernels kept on disk as AOTInductor packages, so that a later process
runs them without dynamo or inductor.

Why: a compiled run in a fresh process paid 8 s before its first step even with every kernel
in inductor's own on-disk cache: importing dynamo and inductor took 4.5 s and tracing the step
again the rest. Loading a package (`torch._C._aoti.AOTIModelPackageLoader`) took 6 ms here and
imports neither; its kernels are the ones torch.compile makes (the same graph and passes:
equal results bit for bit, and as fast, benchmarks/throughput.py).

What is kept: the kernels of runs that keep final positions only (a recording run's kernel
writes into its recorder's rows, and is compiled afresh), on the CPU, for objectives that a new
process can rebuild exactly: registered functions and formula strings. A user's callable has no
such identity and is compiled afresh in every process as before. Building a package costs
15-25 s a kernel (export, then AOTInductor's C++ wrapper), more than torch.compile, so the run
that needs it does not wait: it compiles with torch.compile, queues the missing packages (a
``*.lock`` file holding each spec) and, unless a builder holds the folder (``builder.pid``),
starts one: a detached, low-priority ``python -m descentlab.kernelcache`` that builds the
queue one package at a time, so many runs never start many compilers. The next process finds
them. A package's name is a hash of everything its code depends on (objective, optimizer
kind, d, dtype, the blow-up and tol tests, threads, torch's version and vector ISA, and
descentlab's kernel sources), so a change to any of them builds a new one.

Where: ``$DESCENTLAB_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/descentlab/kernels`` (default
``~/.cache/descentlab/kernels``). ``DESCENTLAB_KERNEL_CACHE=off`` turns the cache off (nothing
is read, written or started). Deleting the folder is always safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from . import formula, functions

OFF = ("off", "0", "false", "no", "none")
# sources the kernels' code comes from: an edit to any of them names new packages
_SOURCES = ("compiled.py", "updates.py", "fusion.py", "functions.py", "formula.py", __file__)
# a builder whose pid file is this old died (it touches the file before each build, and a
# build takes well under a minute)
STALE_LOCK_S = 15 * 60
# size of the points axis in the traced example: unlike any fixed size of the graph, so the
# tracer cannot take it for one (the exported kernel takes any N >= 2)
_EXAMPLE_N = 1031


def directory() -> Path | None:
    """The cache folder, or None when ``DESCENTLAB_KERNEL_CACHE`` turns the cache off."""
    where = os.environ.get("DESCENTLAB_KERNEL_CACHE")
    if where is not None:
        return None if where.strip().lower() in OFF or not where.strip() else Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "descentlab" / "kernels"


def supported() -> bool:
    """Whether this torch can load packages without dynamo (torch 2.6 and later)."""
    aoti = getattr(torch._C, "_aoti", None)
    return hasattr(aoti, "AOTIModelPackageLoader")


_CODE_HASH: str | None = None


def _code_hash() -> str:
    global _CODE_HASH
    if _CODE_HASH is None:
        here = Path(__file__).parent
        digest = hashlib.sha256()
        for name in _SOURCES:
            digest.update(Path(here, name).read_bytes())
        _CODE_HASH = digest.hexdigest()[:16]
    return _CODE_HASH


def objective_identity(objective) -> dict | None:
    """How a new process rebuilds `objective`'s function, or None when it cannot exactly."""
    if objective.style != "batch":
        return None
    if isinstance(objective.fn, formula.Formula):
        return {"formula": objective.fn.text}
    spec = functions.REGISTRY.get(objective.name)
    if spec is not None and spec.fn is objective.fn:
        return {"function": objective.name}
    return None


def spec(objective, kind, nesterov, d, dtype, device, order, clamp, tol_set, kernel, wide):
    """Everything a package's code depends on, as a JSON-able dict; None when the kernel is not
    kept (the cache is off, a GPU, a recording kernel, a callable without identity)."""
    if directory() is None or not supported() or torch.device(device).type != "cpu":
        return None
    if kernel[0] == "record":  # writes into the recorder's rows: compiled afresh
        return None
    ident = objective_identity(objective)
    if ident is None:
        return None
    return {
        "objective": ident,
        "kind": kind,
        "nesterov": bool(nesterov),
        "d": int(d),
        "dtype": str(dtype).removeprefix("torch."),
        "order": repr(float(order)),
        "clamp": bool(clamp),
        "tol_set": bool(tol_set),
        "out": kernel[0],
        "substeps": int(kernel[1]),
        "wide": bool(wide),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "code": _code_hash(),
    }


def _name(s: dict) -> str:
    return hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:40]


def path(s: dict) -> Path:
    return directory() / f"{_name(s)}.pt2"


def available(s: dict | None) -> bool:
    return s is not None and path(s).is_file()


class Packaged:
    """A loaded package called like the torch.compile kernel: ``(x, state, packed, lo, hi)``
    in, the same tuple out."""

    def __init__(self, file: Path, n_state: int, out: str, fallback: Callable[[], Callable]):
        self.loader = torch._C._aoti.AOTIModelPackageLoader(str(file), "model", False, 1, -1)
        self.n_state = n_state
        self.out = out
        self._fallback = fallback  # makes the torch.compile kernel, for a single point
        self._compiled = None

    def __call__(self, x, state, packed, lo, hi):
        if x.shape[1] < 2:  # exported for N >= 2 (a traced size is never taken to be 1)
            if self._compiled is None:
                self._compiled = self._fallback()
            return self._compiled(x, state, packed, lo, hi)
        flat = self.loader.boxed_run([x, *state, packed, lo, hi])
        k = self.n_state
        new_x, new_state = flat[0], tuple(flat[1 : 1 + k])
        if self.out == "plain":
            return new_x, new_state
        return (new_x, new_state, *flat[1 + k :])


def load(s: dict | None, n_state: int, fallback: Callable[[], Callable]) -> Packaged | None:
    """The package for `s`, or None when there is none or it does not load (it is then removed,
    so a fresh build replaces it). `fallback` makes the torch.compile kernel, which runs the
    calls the package cannot take (a single point)."""
    if not available(s):
        return None
    file = path(s)
    try:
        return Packaged(file, n_state, s["out"], fallback)
    except Exception:  # a truncated or foreign file: the cache is only a cache
        with contextlib.suppress(OSError):
            file.unlink()
        return None


def _lock(s: dict) -> Path:
    """A package asked for and not built yet: the file holds its spec (the builder's queue)."""
    return path(s).with_suffix(".lock")


def _failed(s: dict) -> Path:
    return path(s).with_suffix(".failed")


def _builder_lock() -> Path:
    return directory() / "builder.pid"


def _builder_alive() -> bool:
    """Whether a builder holds the folder: its pid file is fresh and names a live process."""
    lock = _builder_lock()
    try:
        pid = int(lock.read_text() or 0)
        fresh = time.time() - lock.stat().st_mtime < STALE_LOCK_S
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's
        pass
    return fresh


def _exclusive(file: Path, text: str) -> bool:
    try:
        fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _queue(s: dict) -> bool:
    """Put `s` in the builder's queue; False when it is there already or failed before."""
    return not _failed(s).exists() and _exclusive(_lock(s), json.dumps(s))


def build_later(specs: Iterable[dict | None]) -> subprocess.Popen | None:
    """Queue the packages in `specs` that are neither on disk, queued nor failed, and start the
    builder unless one runs: a detached, low-priority process (it outlives this one) that
    builds the queue one package at a time, so many runs never start many compilers. Returns
    the process started, or None."""
    todo = [s for s in specs if s is not None and not available(s)]
    if not todo:
        return None
    try:
        directory().mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    queued = [s for s in todo if _queue(s)]
    # queued before the check, so a running builder sees them; queued earlier by a builder
    # that died, they start a new one
    if not pending(todo) or _builder_alive():
        return None
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    try:
        builder = subprocess.Popen(
            [sys.executable, "-m", "descentlab.kernelcache"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not killed with this process's terminal or Ctrl-C
            env=env,
        )
    except OSError:
        for s in queued:
            _lock(s).unlink(missing_ok=True)
        return None
    # reaped by a daemon thread: no zombie if it ends first, and no "still running"
    # ResourceWarning when the Popen is collected (an error under pytest's filterwarnings)
    threading.Thread(target=builder.wait, name="descentlab-builder", daemon=True).start()
    return builder


def pending(specs: Iterable[dict | None]) -> list[dict]:
    """The specs still queued or being built."""
    return [s for s in specs if s is not None and _lock(s).exists()]


def wait(specs: Iterable[dict | None], timeout: float = 600.0) -> bool:
    """Wait until no build of `specs` is under way; True when none is left."""
    specs = list(specs)
    end = time.monotonic() + timeout
    while pending(specs):
        if time.monotonic() > end:
            return False
        time.sleep(0.25)
    return True


def _function(ident: dict) -> Callable:
    if "formula" in ident:
        return formula.parse(ident["formula"])
    return functions.REGISTRY[ident["function"]].fn


def build(s: dict) -> Path:
    """Build the package for `s` now, in this process: trace the lean step (`compiled._lean`)
    to an aten graph with `make_fx` (it sees through torch.func's gradient), export it with the
    points axis dynamic, and compile it with AOTInductor under the same graph pass and vector
    width torch.compile gets. Written to a temporary name and renamed, so a reader never sees
    half a file. Warnings are dropped: nobody reads the builder's, and under an inherited
    ``PYTHONWARNINGS=error`` torch's own deprecation notices failed every build."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _build(s)


def _build(s: dict) -> Path:
    from torch.export import Dim, export
    from torch.fx.experimental.proxy_tensor import make_fx

    from . import compiled
    from .fusion import RowsPass, wider_vectors
    from .updates import HYPER, call_scalars, packed_scalars, zero_state

    dtype = getattr(torch, s["dtype"])
    lean = compiled._lean(
        _function(s["objective"]),
        s["kind"],
        s["nesterov"],
        float(s["order"]),
        s["clamp"],
        s["tol_set"],
        s["out"],
        s["substeps"],
    )
    d = s["d"]
    x = torch.rand(d, _EXAMPLE_N, dtype=dtype)
    state = zero_state(s["kind"], x)
    h = dict.fromkeys(HYPER, 0.0)  # the values do not matter, the layout does
    packed = torch.tensor(packed_scalars(h, 0, 0) + call_scalars(h, 0, s["substeps"]), dtype=dtype)
    lo = hi = torch.zeros(d if s["clamp"] else 1, dtype=dtype)
    n_state = len(state)

    def flat(x, *rest):
        return lean(x, tuple(rest[:n_state]), *rest[n_state:])

    args = (x, *state, packed, lo, hi)
    # (_allow_non_fake_inputs: constants f holds, such as a formula's numbers, stay constants)
    graph = make_fx(flat, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*args)
    points = Dim("N", min=2)
    shapes = ({1: points}, *({1: points} for _ in state), None, None, None)
    program = export(graph, args, dynamic_shapes=shapes)
    configs = {"post_grad_custom_pre_pass": RowsPass(s["wide"])} if s["substeps"] > 1 else {}
    final = path(s)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f"{final.stem}.{os.getpid()}.part.pt2")
    try:
        with wider_vectors() if s["wide"] else contextlib.nullcontext():
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(temporary), inductor_configs=configs
            )
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return final


def _build_queued(lock: Path) -> bool:
    """Build one queued spec; a failed build leaves a ``.failed`` note (its error) so it is
    not retried. Its queue entry is removed either way. False when it failed."""
    try:
        s = json.loads(lock.read_text())
    except (OSError, ValueError):  # taken by another builder, or unreadable: drop it
        lock.unlink(missing_ok=True)
        return True
    torch.set_num_threads(s["threads"])  # inductor writes the thread count into the code
    try:
        build(s)
        return True
    except Exception:
        with contextlib.suppress(OSError):
            _failed(s).write_text(traceback.format_exc())
        return False
    finally:
        lock.unlink(missing_ok=True)


def main() -> int:
    """The builder: hold the folder (a pid file) and build its queue until it is empty. A spec
    queued while it releases the folder is caught by its last look, or by the builder that
    spec's run starts."""
    folder = directory()
    if folder is None:
        return 0
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    status = 0
    me = _builder_lock()
    while True:
        if _builder_alive():
            return status
        me.unlink(missing_ok=True)  # left by a builder that died
        if not _exclusive(me, str(os.getpid())):  # another builder took the folder first
            return status
        try:
            while queue := sorted(folder.glob("*.lock")):
                me.touch()  # fresh while it works (each build takes well under STALE_LOCK_S)
                status |= not _build_queued(queue[0])
        finally:
            me.unlink(missing_ok=True)
        if not any(folder.glob("*.lock")):
            return status


if __name__ == "__main__":
    sys.exit(main())
