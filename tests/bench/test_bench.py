"""The optimizer sweep: its numbers against closed forms and direct runs, the fair choice of
rates, its files, its report, and the same table from a Dask cluster."""

import contextlib
import math
import socket
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import descentlab as dl
from conftest import require_module
from descentlab.bench.sweep import Block, bench, load_table, pool_ecdf, run_block


@pytest.fixture(scope="module")
def small():
    return bench(
        ["sphere", "himmelblau"], ["gd", "adam"], [0.003, 0.03, 0.3], starts=64, steps=120, seeds=2
    )


def test_steps_to_target_match_the_closed_form():
    # gradient descent on x² + y² multiplies f by (1 - 2 lr)² per step, so a start reaches
    # f <= target at the first k with f0 (1 - 2 lr)^(2k) <= target
    lr, target = 0.05, 1e-4
    row, first = run_block(Block("sphere", None, "gd", lr, 7, 200, 300, target, "tune"))
    x0 = dl.random(200, seed=7).points(2, dl.functions.get("sphere").domain).double().numpy()
    f0 = (x0**2).sum(1)
    expected = np.ceil(np.log(target / f0) / (2 * np.log(1 - 2 * lr))).clip(0)
    close = np.abs(first - expected) <= 1  # float32 rounding at the boundary
    assert close.all() and (first == expected).mean() > 0.95
    assert row["success_rate"] == 1.0 and row["median_steps_to_target"] == np.median(first)
    assert row["ert_steps"] == pytest.approx(first.mean())


def test_block_numbers_equal_a_direct_run():
    block = Block("himmelblau", None, "adam", 0.03, 3, 50, 80, 1e-3, "tune")
    row, first = run_block(block)
    run = dl.descend(
        "himmelblau", dl.random(50, seed=3), optimizer="adam", lr=0.03, steps=80, record="all"
    )
    gaps = run.values - 0.0
    reached = (gaps <= 1e-3).any(0)
    assert row["success_rate"] == reached.mean()
    assert np.array_equal(first >= 0, reached)
    for i in np.flatnonzero(reached)[:10]:
        k = first[i]
        assert gaps[k, i] <= 1e-3 and (k == 0 or (gaps[:k, i] > 1e-3).all())
    assert row["median_final_gap"] == pytest.approx(np.median(run.value_))


def test_a_scheduled_sweep_runs_each_block_with_the_schedule():
    # each rate tried is the schedule's base; a block equals descend with that schedule
    result = bench(
        ["himmelblau"],
        ["gd", "adam"],
        [0.003, 0.03],
        starts=40,
        steps=60,
        seeds=1,
        schedule=("cosine", {"warmup": 5}),
    )
    assert set(result.table["schedule"]) == {"cosine(warmup=5)"}
    row = result.table.query("optimizer == 'adam' and lr == 0.03 and phase == 'tune'").iloc[0]
    run = dl.descend(
        "himmelblau",
        dl.random(40, seed=0),
        optimizer="adam",
        lr=0.03,
        steps=60,
        schedule=("cosine", {"warmup": 5}),
    )
    assert row["success_rate"] == ((run.values <= 1e-4).any(0)).mean()
    plain = bench(["himmelblau"], ["adam"], [0.03], starts=40, steps=60, seeds=1)
    assert plain.table["schedule"].eq("constant").all()
    assert plain.table["median_final_gap"].iloc[0] != row["median_final_gap"]
    with pytest.raises(dl.DescentError, match="did you mean 'cosine'"):
        bench(["himmelblau"], ["adam"], [0.03], starts=4, steps=6, seeds=1, schedule="cosin")
    with pytest.raises(dl.DescentError, match="bench takes a schedule by name"):
        bench(["himmelblau"], ["adam"], [0.03], starts=4, steps=6, seeds=1, schedule=lambda o: o)


def test_expected_running_time_counts_the_steps_each_start_took():
    # gd at 0.1 on the six-hump camel: 37.5 % of 200 starts reach the target, 40.5 % diverge,
    # and a diverged start has spent only the steps until it diverged (COCO's ERT)
    block = Block("six_hump_camel", None, "gd", 0.1, 3, 200, 300, 1e-3, "tune", "eager")
    row, first = run_block(block)
    run = dl.descend(
        "six_hump_camel", dl.random(200, seed=3), lr=0.1, steps=300, tol=None, record="final"
    )
    diverged = run.status == "diverged"
    assert 0.2 < diverged.mean() < 0.6 and 0.2 < row["success_rate"] < 0.6
    assert (run.steps[diverged & (first < 0)] < 300).all()
    spent = np.where(first >= 0, first, run.steps).sum()
    assert row["ert_steps"] == pytest.approx(spent / (first >= 0).sum())


def test_rates_are_chosen_on_the_tuning_seed_and_reported_on_fresh_ones(small):
    t = small.table
    tune, report = t[t.phase == "tune"], t[t.phase == "report"]
    assert set(tune.seed) == {0} and set(report.seed) == {1, 2}
    assert len(tune) == 2 * 2 * 3 and len(report) == 2 * 2 * 2
    for (fn, opt), group in tune.groupby(["function", "optimizer"]):
        best = group.sort_values(
            ["success_rate", "median_steps_to_target"], ascending=[False, True]
        ).iloc[0]
        assert group.chosen.sum() == 1 and group[group.chosen].lr.item() == best.lr
        assert set(report[(report.function == fn) & (report.optimizer == opt)].lr) == {best.lr}
    # gd on the sphere: 0.3 converges fastest (|1 - 2 lr| = 0.4 is the smallest factor), and
    # it is the largest rate tried, which the result points out
    chosen = small.chosen.set_index(["function", "optimizer"])
    assert chosen.lr[("sphere", "gd")] == 0.3 and chosen.edge[("sphere", "gd")] == "high"
    assert "sphere / gd: the best rate, 0.3, is the largest tried" in small.edges()
    assert all(chosen.edge[chosen.lr == 0.03] == "")


def test_where_no_rate_succeeds_the_one_that_diverges_least_is_chosen():
    # Rosenbrock on its domain [-5, 10]²: in 100 steps no start reaches the target at either
    # rate; at 0.1 every start diverges, at 0.001 79 %, and the diverged starts' frozen values
    # gave 0.1 the smaller median gap (5e14 against 9e17), so the gap alone picked it
    result = bench(["rosenbrock"], ["gd"], [0.001, 0.1], starts=100, steps=100, seeds=1)
    tune = result.table[result.table.phase == "tune"].set_index("lr")
    assert (tune.success_rate == 0).all() and tune.diverged_fraction[0.1] == 1.0
    assert tune.diverged_fraction[0.001] < 1.0
    assert tune.chosen[0.001] and result.chosen.lr.item() == 0.001


def test_dim_sets_the_d_dimensional_functions_only():
    table = bench(["himmelblau", "rastrigin"], ["gd"], [0.01], dim=3, starts=8, steps=5).table
    assert table.groupby("function").dim.unique().map(list).to_dict() == {
        "himmelblau": [2],
        "rastrigin": [3],
    }
    with pytest.raises(dl.DescentError, match="himmelblau is defined in 2 dimensions only"):
        bench(["himmelblau", "booth"], ["gd"], [0.01], dim=3, starts=8, steps=5)


def test_ecdf_rises_to_the_reported_success_rate(small):
    ecdf = small.ecdf()
    report = small.table[small.table.phase == "report"]
    for (fn, opt), curve in ecdf.groupby(["function", "optimizer"]):
        assert (np.diff(curve.fraction) >= 0).all() and curve.step.iloc[-1] == 120
        rows = report[(report.function == fn) & (report.optimizer == opt)]
        assert curve.fraction.iloc[-1] == pytest.approx(rows.success_rate.mean())


def test_the_pooled_ecdf_counts_every_start_of_every_function(small):
    pooled = pool_ecdf(small.ecdf())
    for opt in ("gd", "adam"):
        firsts = np.concatenate([f for key, f in small.hits.items() if key[1] == opt])
        curve = pooled[pooled.optimizer == opt]
        for step, fraction in zip(curve.step, curve.fraction, strict=True):
            reached = ((firsts >= 0) & (firsts <= step)).mean()
            assert fraction == pytest.approx(reached)


def test_csv_and_parquet_hold_the_same_table(small, tmp_path):
    require_module("pyarrow")
    a = small.save(tmp_path / "t.csv")
    b = small.save(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(load_table(a), load_table(b), check_dtype=False)
    pd.testing.assert_frame_equal(load_table(b), small.table, check_dtype=False)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_report_pictures_and_page(small, tmp_path):
    page = small.report(tmp_path / "r")
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 2 and "sphere" in text
    heat = np.asarray(Image.open(tmp_path / "r" / "success.png").convert("RGB")).astype(int)
    assert heat.std() > 20  # not blank
    # the sphere row is all 100 % for gd: viridis yellow (253, 231, 37) is present
    assert (np.abs(heat - [253, 231, 37]).sum(-1) < 40).sum() > 2000
    ecdf = np.asarray(Image.open(tmp_path / "r" / "ecdf.png").convert("RGB")).astype(int)
    assert (np.abs(ecdf - [31, 119, 180]).sum(-1) < 40).sum() > 100  # the first curve's blue
    assert len(pd.read_csv(tmp_path / "r" / "table.csv")) == len(small.table)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(functions=["himmelblaw"]), "did you mean 'himmelblau'"),
        (dict(optimizers=["adma"]), "unknown optimizer 'adma'; did you mean"),
        (dict(functions=[]), "functions must be a non-empty list"),
        (dict(lrs=[]), "lrs must be a non-empty list"),
        (dict(lrs=[0.01, -1.0]), "lr must be"),
        (dict(starts=0), "starts must be an integer >= 1"),
        (dict(seeds=0), "seeds must be an integer >= 1"),
        (dict(out="table.xlsx"), r"\.csv or \.parquet"),
        (dict(scheduler="nowhere"), "scheduler must be 'local' or a Dask address"),
        (dict(optimizers=["gd", "gd"]), "same entry twice"),
        (
            dict(starts=10**9, steps=10**4),
            r"needs 160065\.0 GB, but .* available; use starts <= [\d,]+ or fewer steps",
        ),
    ],
)
def test_bad_sweeps_are_refused_before_any_work(kwargs, message):
    args = dict(functions=["sphere"], optimizers=["gd"], lrs=[0.01], starts=4, steps=3)
    with pytest.raises(dl.DescentError, match=message):
        bench(**{**args, **kwargs})


def test_an_unreachable_scheduler_fails_fast():
    require_module("distributed")
    began = time.perf_counter()
    with pytest.raises(dl.DescentError, match="cannot reach the Dask scheduler at tcp://"):
        bench(["sphere"], ["gd"], [0.01], starts=4, steps=3, scheduler="tcp://127.0.0.1:9")
    assert time.perf_counter() - began < 15


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (None, "no reply to Dask's handshake"),  # an HTTP server waits for a request line
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "a reply Dask cannot read"),
    ],
)
@pytest.mark.timeout(30, method="thread")  # a hang fails here, not at the suite's 300 s
def test_a_server_that_is_not_a_scheduler_is_named_within_seconds(reply, message):
    """Dask's Client waited forever on a server that accepts and stays silent, and read a text
    reply's first bytes as an exabyte frame length."""
    require_module("distributed")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if reply is not None:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    began = time.perf_counter()
    try:
        with pytest.raises(dl.DescentError, match=f"listens at tcp://127.0.0.1:{port}.*{message}"):
            bench(
                ["sphere"], ["gd"], [0.01], starts=4, steps=3, scheduler=f"tcp://127.0.0.1:{port}"
            )
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert time.perf_counter() - began < 15


@pytest.mark.slow
def test_a_dask_local_cluster_gives_the_same_table():
    require_module("distributed")
    args = (["sphere", "rastrigin"], ["gd", "momentum"], [0.01, 0.1])
    kw = dict(starts=40, steps=60, seeds=2)
    here = bench(*args, **kw).table
    there = bench(*args, scheduler="local", **kw).table
    same = [c for c in here.columns if c != "time_s"]
    pd.testing.assert_frame_equal(here[same], there[same])


@pytest.mark.slow
def test_cli_bench_writes_table_and_report(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "descentlab.cli",
        "bench",
        "--functions",
        "sphere,booth",
        "--optimizers",
        "gd,rmsprop",
        "--lrs",
        "0.01,0.1",
        "--starts",
        "30",
        "--steps",
        "50",
        "--seeds",
        "1",
        "--out",
        str(tmp_path / "t.csv"),
        "--report",
        str(tmp_path / "rep"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "chosen rates" in done.stdout and "booth" in done.stdout
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == 2 * 2 * 2 + 2 * 2 * 1
    assert (tmp_path / "rep" / "index.html").exists()
    bad = subprocess.run(
        [*cmd[:4], "--functions", "spere", "--lrs", "0.1"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "did you mean 'sphere'" in bad.stderr
    assert math.isfinite(table.time_s.sum())


def test_ctrl_c_keeps_the_finished_blocks(monkeypatch, tmp_path):
    from descentlab.bench import sweep

    calls = []

    def interrupted_third(block):
        calls.append(block)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return run_block(block)

    monkeypatch.setattr(sweep, "run_block", interrupted_third)
    with pytest.raises(KeyboardInterrupt):
        bench(["sphere"], ["gd"], [0.01, 0.1, 0.3], starts=8, steps=10, out=tmp_path / "t.csv")
    saved = pd.read_csv(tmp_path / "t.csv")
    assert list(saved.lr) == [0.01, 0.1] and (saved.phase == "tune").all()


def test_auto_builds_the_c_loop_for_a_sweep_whose_blocks_repay_it(monkeypatch, tmp_path):
    # ten blocks of 1,000 starts x 500 steps per (function, optimizer): 2 s eager together, a
    # build 0.6 s; one block alone (0.2 s) would never pay for it, nor the small sweep's
    from descentlab.engine.c import build, kernels

    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))  # nothing built yet
    for name in ("_KERNELS", "_SOURCES", "_CHECKED"):
        monkeypatch.setattr(kernels, name, {})
    monkeypatch.setattr(build, "_LIBRARIES", {})
    small = bench(["sphere", "himmelblau"], ["gd", "adam"], [0.003, 0.3], starts=64, steps=120)
    assert set(small.table.engine) == {"eager"}
    kw = dict(starts=1000, steps=500, seeds=3)
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 2e-1, 4e-1]
    fast = bench(["sphere"], ["gd"], lrs, **kw).table
    slow = bench(["sphere"], ["gd"], lrs, engine="eager", **kw).table
    assert set(fast.engine) == {"compiled"} and set(slow.engine) == {"eager"}
    same = ["phase", "lr", "seed", "success_rate", "diverged_fraction", "chosen"]
    pd.testing.assert_frame_equal(fast[same], slow[same])
    # steps to target may part by one where float rounding meets the target
    np.testing.assert_allclose(fast.median_steps_to_target, slow.median_steps_to_target, atol=1)


class _Cluster:
    """A Dask client's calls that `check_workers` makes, answering as given: `answers` by
    worker for `worker_version`, `installed` for the installed version's lookup."""

    def __init__(self, answers, installed=None, workers=True):
        self.answers, self.installed, self.workers = answers, installed or {}, workers

    def wait_for_workers(self, n, timeout=None):
        if not self.workers:
            raise TimeoutError

    def run(self, function, *args, workers=None, on_error="raise"):
        from descentlab.bench.runners import worker_version

        if function is worker_version:
            return dict(self.answers)
        return {w: self.installed.get(w, PackageNotFoundError("descentlab")) for w in workers}


def test_a_cluster_that_cannot_run_the_blocks_is_named_before_any_work():
    from descentlab.bench.runners import check_workers

    mine = version("descentlab")
    check_workers(_Cluster({"tcp://a:1": mine, "tcp://b:1": mine}), "tcp://s:8786")
    with pytest.raises(dl.DescentError, match=r"has no workers after .* `dask worker tcp://s"):
        check_workers(_Cluster({}, workers=False), "tcp://s:8786")
    # what Dask sends back for a worker that cannot unpickle worker_version
    absent = Exception("ModuleNotFoundError(\"No module named 'descentlab'\")")
    with pytest.raises(dl.DescentError, match=r"not installed on 1 of 2 .*first: tcp://b:1"):
        check_workers(_Cluster({"tcp://a:1": mine, "tcp://b:1": absent}), "tcp://s:8786")
    broken = Exception("ImportError('no pandas here')")
    with pytest.raises(
        dl.DescentError,
        match=r"does not import on 1 of 2 .*\(first: tcp://b:1: ImportError: no pandas here\)",
    ):
        check_workers(_Cluster({"tcp://a:1": mine, "tcp://b:1": broken}), "tcp://s:8786")
    with pytest.raises(
        dl.DescentError,
        match=r"not installed on 1 of 3 .*first: tcp://b:1.* does not import on 1 of 3 .*tcp://c",
    ):
        check_workers(
            _Cluster({"tcp://a:1": mine, "tcp://b:1": absent, "tcp://c:1": broken}), "tcp://s"
        )
    # an older descentlab has no worker_version to unpickle: its installed version is named
    older = Exception("AttributeError(\"Can't get attribute 'worker_version'\")")
    for answers, installed in [
        ({"tcp://a:1": mine, "tcp://b:1": "0.0.1"}, {}),
        ({"tcp://a:1": mine, "tcp://b:1": older}, {"tcp://b:1": "0.0.1"}),
    ]:
        with pytest.raises(
            dl.DescentError, match=rf"workers run descentlab 0\.0\.1, this process {mine}"
        ):
            check_workers(_Cluster(answers, installed), "tcp://s:8786")


@pytest.mark.slow
@pytest.mark.timeout(120, method="thread")
def test_workers_whose_descentlab_does_not_import_are_named_and_dying_workers_end_the_run(
    tmp_path, monkeypatch
):
    # a worker whose descentlab does not import dies unpickling a block, and Dask then waited
    # for workers forever: check_workers names such a worker before any block is sent, and
    # should a worker die on every block anyway, the run ends once none is left
    require_module("distributed")
    from distributed import LocalCluster

    from descentlab.bench import runners

    fake = tmp_path / "descentlab"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('descentlab is broken here')\n")
    # worker processes start with this process's sys.path: they import the broken one (this
    # process has descentlab imported already)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runners, "NO_WORKERS_S", 6.0)
    kw = dict(functions=["sphere"], optimizers=["gd"], lrs=[0.01], starts=4, steps=3)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster:
        began = time.perf_counter()
        with pytest.raises(
            dl.DescentError,
            match=r"does not import on 1 of 1 Dask workers .*ImportError: descentlab is broken",
        ):
            bench(**kw, scheduler=cluster.scheduler_address)
        assert time.perf_counter() - began < 10
        monkeypatch.setattr(runners, "check_workers", lambda client, address: None)
        with pytest.raises(dl.DescentError, match="no workers for 6 s"):
            bench(**kw, scheduler=cluster.scheduler_address)
    assert time.perf_counter() - began < 90


# ---- a real cluster's address, and workers that die (issue 24) ------------------------------

CLUSTER_KW = dict(
    functions=["himmelblau", "sphere"],
    optimizers=["gd", "adam"],
    lrs=[0.003, 0.01],
    starts=2000,
    steps=200,
    seeds=1,
)


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return (
        table.drop(columns=["time_s"])
        .sort_values(["function", "optimizer", "lr", "seed"])
        .reset_index(drop=True)
    )


@contextlib.contextmanager
def _cluster(workers: int):
    """A scheduler (a LocalCluster with no workers of its own) and `workers` `dask worker`
    processes with no nanny, so that a killed one stays dead: its address and the processes."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=True) as cluster:
        address = cluster.scheduler_address
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        try:
            deadline = time.monotonic() + 60
            while len(cluster.scheduler_info["workers"]) < workers:
                assert time.monotonic() < deadline, "the workers did not start"
                time.sleep(0.2)
            yield address, procs
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


def test_a_cluster_address_runs_and_a_killed_worker_is_replaced_by_the_others():
    """Against a scheduler's tcp:// address, check_workers runs `worker_version` on each worker
    (its import of the sweep broke with the package's new layout, and every real cluster was
    refused). A worker SIGKILLed mid-sweep: Dask runs its block on the other; same table."""
    require_module("distributed")
    here = bench(**CLUSTER_KW).table
    with _cluster(2) as (address, procs):

        def progress(done, total):
            if done == 2:
                procs[0].kill()

        there = bench(**CLUSTER_KW, scheduler=address, progress=progress)
    assert procs[0].returncode is not None
    pd.testing.assert_frame_equal(_comparable(there.table), _comparable(here))


def test_workers_that_leave_keep_the_finished_blocks_and_name_the_cause(tmp_path, monkeypatch):
    """The issue's case: the cluster's only worker SIGKILLed mid-sweep. It failed after 20 s
    blaming a missing install, and the blocks that had finished were not written."""
    require_module("distributed")
    from descentlab.bench import runners

    monkeypatch.setattr(runners, "NO_WORKERS_S", 4.0)
    out = tmp_path / "partial.csv"
    with _cluster(1) as (address, procs):

        def progress(done, total):
            if done == 3:
                procs[0].kill()

        with pytest.raises(dl.DescentError) as caught:
            bench(**CLUSTER_KW, scheduler=address, progress=progress, out=out)
    message = str(caught.value)
    assert "workers left during the sweep" in message and "install" not in message
    finished = int(message.split(" blocks finished")[0].rsplit(" ", 1)[1])
    assert finished >= 3 and f"the {finished} blocks that finished are in {out}" in message
    saved = load_table(out)
    assert len(saved) == finished
    here = _comparable(bench(**CLUSTER_KW).table)
    got = _comparable(saved)
    merged = got.merge(here, on=["function", "optimizer", "lr", "seed"], suffixes=("", "_here"))
    assert len(merged) == finished
    for column in ("success_rate", "diverged_fraction", "median_final_gap"):
        np.testing.assert_array_equal(merged[column], merged[f"{column}_here"])
