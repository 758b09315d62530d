"""Step 4 of the C backend: compile a loop's source with the system's C compiler and keep the
library on disk, so that a later process loads it in milliseconds.

The cache never breaks a run:

- A library is published whole. It is compiled in a build folder of its own, then its digest
  (SHA-256 and size) is written beside it as ``<name>.sum``, each file synced and renamed into
  place. A library whose digest is missing or does not match (truncated, damaged, copied from
  elsewhere) is never loaded: it is built again.
- A cache folder that cannot be used (read-only, full, a file in its place) is replaced, for the
  rest of the process, by a private temporary folder, with a one-line note.
- The compiler runs under a timeout (`BUILD_TIMEOUT_S`) in a session of its own; a Ctrl-C (or
  the run's interrupt flag) kills it and raises `BuildInterrupted`, which stops the run.
- Only a deterministic failure (the compiler's own error message) is remembered, as
  ``<name>.failed``; a signal, a full disk or a timeout is not, and the next run tries again.
- Build folders left by a build that was killed are removed by the next build in that folder.
- The cache is bounded: after each build, the least recently used libraries are removed until
  the folder holds at most ``$DESCENTLAB_KERNEL_CACHE_MB`` megabytes (default 200, a thousand
  or so loops; loading a library from disk marks it used).

Where: ``$DESCENTLAB_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/descentlab/c`` (by default
``~/.cache/descentlab/c``); ``DESCENTLAB_KERNEL_CACHE=off`` keeps libraries in a private folder
removed at exit. Deleting the folder is always safe.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .trace import Unsupported

OFF = ("off", "0", "false", "no", "none")
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",  # sqrt as one instruction (errno is never read)
    "-fno-trapping-math",  # selects may compute both sides (no signal is ever trapped)
    "-ffp-contract=off",  # torch rounds a*b + c twice: so must we
    "-fopenmp-simd",  # the lane loops' "omp simd" (no OpenMP runtime)
    "-fPIC",
    "-shared",
)
# a build of the largest loop (64 coordinates) takes seconds; a compiler still running after
# this long is stuck, and the run goes on without the C loop
BUILD_TIMEOUT_S = 120.0
# how often a build looks at the run's interrupt flag
_POLL_S = 0.05
# compiler messages of a failure that says nothing about the source: not remembered
_TRANSIENT = (
    "No space left on device",
    "Disk quota exceeded",
    "Cannot allocate memory",
    "Read-only file system",
    "Too many open files",
    "Killed",
    "signal terminated",
)
_STALE_S = 3600.0  # an orphaned temporary file older than this is removed
CACHE_MB = 200.0  # the cache's default bound (`DESCENTLAB_KERNEL_CACHE_MB`)

_LIBRARIES: dict[str, ctypes.CDLL] = {}
_PRIVATE: list[tempfile.TemporaryDirectory] = []
# the folder used for each one asked for (`DESCENTLAB_KERNEL_CACHE`), once chosen
_CHOSEN: dict[Path | None, Path] = {}
_LOCK = threading.RLock()  # prebuild's threads may fall back at once


class BuildInterrupted(Exception):
    """The run was interrupted (Ctrl-C) while its C loop was being built."""


def compiler() -> str | None:
    """The C compiler: ``$CC``, else gcc, else cc; None when there is none."""
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def folder() -> Path:
    """The folder libraries are kept in (see the module's docstring), made if missing; a
    private temporary one, with a note, where the cache folder cannot be used."""
    asked = _asked_folder()
    with _LOCK:
        chosen = _CHOSEN.get(asked)
        if chosen is None:
            if asked is None:
                chosen = _private()
            else:
                try:
                    _probe(asked)
                    chosen = asked
                except OSError as exc:
                    chosen = _private()
                    _note(asked, exc)
            _CHOSEN[asked] = chosen
        return chosen


def _asked_folder() -> Path | None:
    where = os.environ.get("DESCENTLAB_KERNEL_CACHE")
    if where is not None:
        return None if where.strip().lower() in OFF or not where.strip() else Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "descentlab" / "c"


def _probe(where: Path) -> None:
    """Raise OSError unless `where` is a folder this process can write a file into."""
    where.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=where, prefix=".probe-")
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)


def _private() -> Path:
    """This process's own folder, removed at exit."""
    with _LOCK:
        if not _PRIVATE:
            _PRIVATE.append(tempfile.TemporaryDirectory(prefix="descentlab-c-"))
        return Path(_PRIVATE[0].name)


def _note(where: Path, exc: OSError) -> None:
    why = exc.strerror or type(exc).__name__
    warnings.warn(
        f"kernel cache {where} is not usable ({why}); C loops are built in a temporary folder "
        "for this process (set DESCENTLAB_KERNEL_CACHE to a writable folder to keep them)",
        stacklevel=4,
    )


def _fall_back(exc: OSError) -> Path | None:
    """Move this process to a private folder after writing into the cache failed; None when it
    already is in one."""
    asked = _asked_folder()
    private = _private()
    with _LOCK:
        if _CHOSEN.get(asked) == private:
            return None
        _CHOSEN[asked] = private
    _note(asked or private, exc)
    return private


def library_name(text: str) -> str:
    """The library's file name: a hash of the source, the flags, the compiler and the machine,
    so a change to any of them builds anew."""
    cc = compiler()
    if cc is None:
        raise Unsupported("no C compiler (gcc or cc, or $CC)")
    ident = "\n".join([text, cc, *FLAGS, platform.machine(), _cpu_flags(), sys.platform])
    return f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.so"


def is_built(text: str) -> bool:
    """Whether this source's library is in this process or verified on disk."""
    name = library_name(text)
    return name in _LIBRARIES or _verified(folder() / name)


def load(text: str, symbols: Iterable[str], cancelled: Callable[[], bool] | None = None):
    """The library built from `text` (built now unless it is on disk and verified), with the
    given symbols. A library that does not load or lacks a symbol is removed and built again,
    once. Raises `Unsupported` (the compiler failed, or there is none) or `BuildInterrupted`."""
    name = library_name(text)
    if name in _LIBRARIES:
        return _LIBRARIES[name]
    for attempt in range(2):
        lib = _build_file(text, folder() / name, cancelled)
        library = None
        try:
            library = ctypes.CDLL(str(lib))
            for symbol in symbols:
                getattr(library, symbol)
        except (OSError, AttributeError) as exc:
            if library is not None:  # or the rebuilt file's dlopen returns this handle again
                _unload(library)
            discard(lib)
            if attempt:
                why = f"the built kernel does not load ({exc})"
                raise Unsupported(why, lasting=False) from None
            continue
        _LIBRARIES[name] = library
        return library
    raise AssertionError("unreachable")


def _unload(library: ctypes.CDLL) -> None:
    """Close a library nothing uses (a foreign one): dlopen keeps a handle by its path."""
    import _ctypes

    with contextlib.suppress(AttributeError, OSError):
        _ctypes.dlclose(library._handle)


def discard(lib: Path) -> None:
    """Remove a library and its digest (a damaged or foreign one)."""
    for path in (lib, _sum_path(lib)):
        with contextlib.suppress(OSError):
            path.unlink()


def _sum_path(lib: Path) -> Path:
    return lib.with_suffix(".sum")


def _digest(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _verified(lib: Path) -> bool:
    """Whether `lib` is whole: its digest file names its size and SHA-256."""
    try:
        want = json.loads(_sum_path(lib).read_text())
        if lib.stat().st_size != want["size"]:
            return False
        return _digest(lib) == want
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build_file(text: str, lib: Path, cancelled) -> Path:
    """`lib` built from `text` unless it is verified on disk, and where it now is (in a
    private folder where the cache refused the write); a source the compiler rejected before
    is not tried again."""
    try:
        reason = lib.with_suffix(".failed").read_text().strip()
    except OSError:
        reason = ""
    if reason:
        raise Unsupported(reason)
    if _verified(lib):
        with contextlib.suppress(OSError):  # used now: the last the cache's bound removes
            os.utime(lib)
        return lib
    try:
        _compile(text, lib, cancelled)
        return lib
    except OSError as exc:  # the cache folder refused a write: build privately
        private = _fall_back(exc)
        if private is None:
            why = f"cannot write the C loop ({exc.strerror or exc})"
            raise Unsupported(why, lasting=False) from None
        _compile(text, private / lib.name, cancelled)
        return private / lib.name


def _compile(text: str, lib: Path, cancelled) -> None:
    """Compile `text` into `lib`, published whole with its digest (see the module's
    docstring)."""
    cc = compiler()
    if cc is None:
        raise Unsupported("no C compiler (gcc or cc, or $CC)")
    where = lib.parent
    _remove_stale(where)
    work = Path(tempfile.mkdtemp(dir=where, prefix=f".build-{os.getpid()}-"))
    try:
        source = work / "kernel.c"
        source.write_text(text)
        built = work / lib.name
        vector = "#pragma omp declare simd" in text
        links = ["-Wl,-z,defs", "-lmvec", "-lm"] if vector else ["-lm"]
        _run_compiler([cc, *FLAGS, str(source), "-o", str(built), *links], lib, cancelled)
        digest = work / "digest"
        digest.write_text(json.dumps(_digest(built)))
        for path in (built, digest):
            _sync(path)
        os.replace(built, lib)
        os.replace(digest, _sum_path(lib))
        with contextlib.suppress(OSError):  # the renames themselves, on filesystems that can
            fd = os.open(where, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    trim(where, keep=lib)


def cache_bound() -> float:
    """The cache's bound in bytes: ``$DESCENTLAB_KERNEL_CACHE_MB`` megabytes (default 200)."""
    given = os.environ.get("DESCENTLAB_KERNEL_CACHE_MB", "")
    try:
        megabytes = float(given) if given.strip() else CACHE_MB
    except ValueError:
        megabytes = CACHE_MB
    return max(megabytes, 0.0) * 1e6


def trim(where: Path, keep: Path | None = None) -> None:
    """Remove the least recently used libraries of `where` (with their digests) until it
    holds at most `cache_bound` bytes; `keep` (the one just built) stays."""
    try:
        entries = [e for e in os.scandir(where) if e.name.endswith(".so")]
        sized = [(e.stat().st_mtime, e.stat().st_size, Path(e.path)) for e in entries]
    except OSError:
        return
    total, bound = sum(size for _, size, _ in sized), cache_bound()
    for _, size, lib in sorted(sized, key=lambda item: item[0]):  # oldest use first
        if total <= bound:
            break
        if keep is not None and lib == keep:
            continue
        discard(lib)
        with contextlib.suppress(OSError):
            lib.with_suffix(".failed").unlink()
        total -= size


def _run_compiler(argv: list[str], lib: Path, cancelled) -> None:
    """Run the compiler to its end; a failure raises `Unsupported`, remembered (``.failed``)
    only when the compiler itself rejected the source."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, text=True
        )
        began = time.monotonic()
        try:
            while True:
                try:
                    code = proc.wait(timeout=_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if cancelled is not None and cancelled():
                    raise BuildInterrupted("interrupted while building the C loop")
                if time.monotonic() - began > BUILD_TIMEOUT_S:
                    raise Unsupported(
                        f"the C compiler did not finish in {BUILD_TIMEOUT_S:g} s", lasting=False
                    )
        except BaseException:
            _kill(proc)
            raise
        log.seek(0)
        message = log.read().strip()
    if code == 0:
        return
    first = (message.splitlines() or ["failed"])[0][:200]
    why = f"the C compiler failed: {first}"
    if code < 0 or any(word in message for word in _TRANSIENT):
        raise Unsupported(
            why if code > 0 else f"the C compiler was stopped by signal {-code}", lasting=False
        )
    with contextlib.suppress(OSError):  # if not remembered, the next run asks the compiler
        _write_whole(lib.with_suffix(".failed"), why)
    raise Unsupported(why)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the compiler and everything it started (its own session)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def _write_whole(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(where: Path) -> None:
    """Remove what killed builds left in `where`: build folders of processes that are gone,
    and old temporary files."""
    try:
        entries = list(os.scandir(where))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        name = entry.name
        if name.startswith(".build-"):
            pid = name.split("-")[1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)
        elif name.startswith((".tmp-", ".probe-")):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_S:
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def prebuild(texts: Iterable[str], cancelled: Callable[[], bool] | None = None) -> None:
    """Build many sources at once, one compiler per core, so that `load` then finds each on
    disk. A source that fails is left for `load` to report; a Ctrl-C stops every build."""
    todo = {}
    for text in texts:
        try:
            if not is_built(text):
                todo[library_name(text)] = text
        except Unsupported:
            continue
    if len(todo) < 2:
        return
    stop = threading.Event()

    def stopped() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    def one(text: str) -> None:
        with contextlib.suppress(Unsupported, BuildInterrupted):
            _build_file(text, folder() / library_name(text), stopped)

    with ThreadPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:
        try:
            list(pool.map(one, todo.values()))
        except BaseException:
            stop.set()
            raise


_CPU: list[str] = []


def _cpu_flags() -> str:
    """What -march=native compiles for: the CPU's model and flags."""
    if not _CPU:
        try:
            text = Path("/proc/cpuinfo").read_text()
            lines = [ln for ln in text.splitlines() if ln.startswith(("flags", "model name"))]
            _CPU.append("\n".join(sorted(set(lines))))
        except OSError:
            _CPU.append(platform.processor())
    return _CPU[0]
