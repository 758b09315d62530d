"""Where `bench` runs its blocks: here, one after another, or as Dask tasks.

A runner is called as ``runner(run, blocks, progress, done, total)`` and returns ``run(block)``
for every block, in the order of `blocks`; `finished` holds the rows of the blocks done so far,
so a sweep cut short by Ctrl-C can keep them.
"""

from __future__ import annotations

from .errors import DescentError


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
        try:
            if scheduler == "local":
                self.cluster = LocalCluster(threads_per_worker=1, processes=True)
                self.client = Client(self.cluster)
            else:
                self.client = Client(scheduler, timeout="5s")
        except (OSError, TimeoutError) as exc:
            if self.cluster is not None:
                self.cluster.close()
            raise DescentError(
                f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); start "
                "one with `dask scheduler` and workers with `dask worker ADDRESS`, or use "
                "--scheduler local"
            ) from None

    def __call__(self, run, blocks, progress, done, total):
        from distributed import as_completed

        futures = self.client.map(run, blocks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list = [None] * len(blocks)
        for count, future in enumerate(as_completed(futures), start=1):
            out[index[future.key]] = future.result()
            self.finished.append(out[index[future.key]][0])
            if progress is not None:
                progress(done + count, total)
        return out

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
