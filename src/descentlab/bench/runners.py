"""Where `bench` runs its blocks: here, one after another, or as Dask tasks.

A runner is called as ``runner(run, blocks, progress, done, total)`` and returns ``run(block)``
for every block, in the order of `blocks`; `finished` holds the rows of the blocks done so far,
so a sweep cut short by Ctrl-C can keep them.
"""

from __future__ import annotations

import importlib.metadata
import re

from ..errors import DescentError


class Local:
    """Blocks one after another in this process."""

    def __init__(self):
        self.finished: list[dict] = []  # rows of finished blocks, for a run cut short

    def __call__(self, run, blocks, progress, done, total):
        out = []
        for i, block in enumerate(blocks):
            out.append(run(block))
            self.finished.append(out[-1][0])
            if progress is not None:
                progress(done + i + 1, total)
        return out

    def close(self):
        pass


KNOCK_S = 5.0  # how long connecting to a scheduler may take
ANSWER_S = 3.0  # and how long its answer to Dask's handshake, after that


def _unreachable(scheduler: str, exc: BaseException) -> str:
    return (
        f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); start one "
        "with `dask scheduler` and workers with `dask worker ADDRESS`, or use --scheduler local"
    )


def knock(address: str, seconds: float = KNOCK_S, answer: float = ANSWER_S) -> None:
    """Connect to `address` within `seconds` and have Dask's handshake answered within `answer`
    more, or raise a one-line `DescentError`. `Client` bounds the TCP connect but not the
    handshake after it: pointed at something that accepts and stays silent (an HTTP server, the
    dashboard's port 8787) it waited forever, and a server that answered with text had its first
    bytes read as a frame length (an allocation of exabytes). The knock runs in its own thread
    and event loop, so it also works where a loop is already running (a notebook)."""
    import asyncio
    import threading

    from distributed.comm import connect

    outcome: list[BaseException | None] = []

    async def handshake():
        # connect() gives up on the TCP connection after `seconds` with an OSError, so this
        # deadline, later, can only fall in the handshake
        comm = await asyncio.wait_for(connect(address, timeout=seconds), seconds + answer)
        await comm.close()

    def attempt():
        try:
            asyncio.run(handshake())
            outcome.append(None)
        except BaseException as exc:  # reported in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=attempt, name="descentlab-knock", daemon=True)
    thread.start()
    thread.join(seconds + answer + 2)
    exc = outcome[0] if outcome else TimeoutError()
    if exc is None:
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        raise exc
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        raise DescentError(_unreachable(address, exc))  # refused, timed out, unknown host
    what = (
        f"no reply to Dask's handshake in {answer:g} s"
        if isinstance(exc, TimeoutError)
        else f"a reply Dask cannot read: {type(exc).__name__}"
    )
    raise DescentError(
        f"something listens at {address}, but not a Dask scheduler ({what}); a scheduler "
        "listens on port 8786 by default, its dashboard on 8787"
    )


POLL_S = 2.0  # how often a Dask run looks at its cluster
NO_WORKERS_S = 20.0  # how long it waits on a cluster without workers
WORKERS_S = 10.0  # how long a new run waits for a cluster's first worker


def version() -> str:
    """This descentlab's version: the installed package's, else (a source tree) `__version__`."""
    try:
        return importlib.metadata.version("descentlab")
    except importlib.metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def worker_version() -> str:
    """Run on each worker by `check_workers`: it imports everything a block needs (sent by
    reference, it imports descentlab itself before it runs), then returns `version()`."""
    from . import sweep  # noqa: F401

    return version()


def check_workers(client, address: str) -> None:
    """A cluster that can run the blocks: at least one worker (within `WORKERS_S`), and every
    worker able to import this process's descentlab version. A block sent to a worker that
    cannot import it kills the worker, and Dask then waits for workers forever."""
    try:
        client.wait_for_workers(1, timeout=WORKERS_S)
    except TimeoutError:
        raise DescentError(
            f"the Dask scheduler at {address} has no workers after {WORKERS_S:g} s; start "
            f"some with `dask worker {address}` (each with descentlab installed)"
        ) from None
    found = client.run(worker_version, on_error="return")
    mine = version()
    failed = {w: e for w, e in sorted(found.items()) if isinstance(e, BaseException)}
    if failed:
        # an older descentlab lacks worker_version: its installed version says so
        installed = client.run(
            importlib.metadata.version, "descentlab", workers=list(failed), on_error="return"
        )
        found.update({w: v for w, v in installed.items() if isinstance(v, str) and v != mine})
        failed = {w: e for w, e in failed.items() if isinstance(found[w], BaseException)}
    texts = {w: _error_text(e) for w, e in failed.items()}
    absent = [w for w, t in texts.items() if "No module named 'descentlab'" in t]
    broken = [w for w in texts if w not in absent]
    problems = []
    if absent:
        problems.append(
            f"descentlab is not installed on {len(absent)} of {len(found)} Dask workers "
            f"(first: {absent[0]}); pip install 'descentlab[scale]=={mine}' on each"
        )
    if broken:
        problems.append(
            f"descentlab does not import on {len(broken)} of {len(found)} Dask workers "
            f"(first: {broken[0]}: {texts[broken[0]]}); install descentlab[scale]=={mine} "
            "there again"
        )
    if problems:
        raise DescentError("; ".join(problems))
    other = sorted({v for v in found.values() if v != mine})
    if other:
        raise DescentError(
            f"Dask workers run descentlab {', '.join(other)}, this process {mine}; install "
            f"the same version on each, so every block computes the same way"
        )


def _error_text(error: BaseException) -> str:
    """'ImportError: why', also where Dask wrapped it (a worker that cannot even unpickle the
    function sends back ``Exception("ImportError('why')")``)."""
    text = f"{type(error).__name__}: {error}"
    inner = re.fullmatch(r"Exception: (\w+)\((['\"])(.*)\2\)", text, flags=re.S)
    return f"{inner[1]}: {inner[3]}" if inner else text


class DaskRunner:
    """Blocks as Dask tasks; results come back in the order of `blocks`."""

    def __init__(self, scheduler: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise DescentError(
                "scheduler= needs Dask: pip install 'descentlab[scale]' (dask[distributed])"
            ) from None
        self.cluster = None
        self.finished: list[dict] = []
        if scheduler != "local":
            knock(scheduler)
        try:
            if scheduler == "local":
                self.cluster = LocalCluster(threads_per_worker=1, processes=True)
                self.client = Client(self.cluster)
            else:
                self.client = Client(scheduler, timeout=f"{KNOCK_S}s")
        except (OSError, TimeoutError) as exc:
            if self.cluster is not None:
                self.cluster.close()
            raise DescentError(_unreachable(scheduler, exc)) from None
        if scheduler != "local":
            try:
                check_workers(self.client, scheduler)
            except BaseException:
                self.client.close()
                raise

    def __call__(self, run, blocks, progress, done, total):
        from distributed import wait

        futures = self.client.map(run, blocks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list = [None] * len(blocks)
        pending, count, alone = set(futures), done, 0.0
        workers = set(self.client.scheduler_info().get("workers", {}))  # every one seen
        while pending:
            try:
                finished, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:  # none finished in POLL_S
                finished = set()
            for future in finished:
                try:
                    out[index[future.key]] = future.result()
                except DescentError:
                    raise
                except Exception as exc:  # raised on a worker: name it in one line
                    if type(exc).__name__ == "KilledWorker":  # it took 3 workers down with it
                        raise DescentError(
                            "a block was running on every Dask worker that died under it (3, "
                            "Dask's limit): it may need more memory than a worker has; use "
                            "fewer starts per block"
                        ) from None
                    raise DescentError(
                        f"a block failed on the Dask cluster: {type(exc).__name__}: {exc}"
                    ) from None
                self.finished.append(out[index[future.key]][0])
                count += 1
                if progress is not None:
                    progress(count, total)
            # Dask runs a dead worker's blocks again on the others; with none left the tasks
            # would wait for workers forever
            now = self.client.nthreads()
            workers |= set(now)
            alone = 0.0 if finished or now else alone + POLL_S
            if alone >= NO_WORKERS_S:
                raise DescentError(self._why_no_workers(len(workers), count - done, len(pending)))
        return out

    def _why_no_workers(self, seen: int, ran: int, left: int) -> str:
        """The real cause as far as it can be told: workers that ran blocks and then left were
        stopped or killed (out of memory, a signal, the machine); workers that left before
        any block finished may have died unpickling one (descentlab missing or broken)."""
        wait = f"has had no workers for {NO_WORKERS_S:g} s"
        if ran:
            return (
                f"the Dask cluster's workers left during the sweep ({seen} seen; killed, out of "
                f"memory or stopped) and it {wait}; {ran} blocks finished, {left} not run; "
                "start workers with `dask worker ADDRESS` and run again"
            )
        if seen:
            return (
                f"the Dask cluster's {seen} workers left before any block finished and it {wait}"
                f", with {left} blocks left: a worker dies when it cannot import descentlab "
                "(install it on every worker), or it was stopped"
            )
        return (
            f"the Dask cluster {wait}, with {left} blocks left; start workers with "
            "`dask worker ADDRESS`"
        )

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def runner_for(scheduler: str | None):
    if scheduler is None:
        return Local()
    if not isinstance(scheduler, str) or not (
        scheduler == "local" or "://" in scheduler or ":" in scheduler
    ):
        raise DescentError(
            f"scheduler must be 'local' or a Dask address like tcp://host:8786, got {scheduler!r}"
        )
    return DaskRunner(scheduler)
