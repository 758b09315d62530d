import io
import json
import os
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

import descentlab as dl
from descentlab.descent.trajectory import _ARRAYS
from descentlab.descent.walkers import Recorder
from descentlab.memory import empty


@pytest.fixture(scope="module")
def camel():
    return dl.descend("six_hump_camel", dl.grid(12), lr=0.01, steps=60, tol=1e-3)


def test_save_and_load_round_trip_exactly(camel, tmp_path):
    written = camel.save(tmp_path / "camel")
    assert written.name == "camel.npz"
    back = dl.load(written)
    for name in _ARRAYS:
        a, b = getattr(camel, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.meta == json.loads(json.dumps(camel.meta))
    assert back.summary() == camel.summary()
    assert back.objective is not None and back.objective.name == "six_hump_camel"
    assert list(tmp_path.iterdir()) == [written]  # no temporary file left behind


def test_single_point_shapes_survive_loading(tmp_path):
    run = dl.descend(lambda x: x**2, start=1.8, lr=0.1, tol=0.01)
    back = dl.load(run.save(tmp_path / "seed001.npz"))
    assert back.steps == 27 and f"{back.x:.2f}" == "0.00" and back.single
    assert back.objective is None  # a Python callable cannot be restored from a file


def test_load_errors(tmp_path, camel):
    with pytest.raises(dl.LoadError, match="no such file"):
        dl.load(tmp_path / "missing.npz")
    good = camel.save(tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(dl.LoadError, match="truncated or not a .npz"):
        dl.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(dl.LoadError, match="not a descentlab trajectory"):
        dl.load(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(dl.LoadError):
        dl.load(tmp_path / "text.npz")
    with zipfile.ZipFile(tmp_path / "partial.npz", "w") as z:
        z.writestr("meta.npy", b"")
    with pytest.raises(dl.LoadError):
        dl.load(tmp_path / "partial.npz")
    with pytest.raises(dl.LoadError, match="directory"):
        dl.load(tmp_path)


def test_reached_and_summary_agree(camel):
    reached = camel.reached()
    s = camel.summary()
    assert sum(m["count"] for m in s["minima"]) + s["no_minimum"] == camel.n_points
    for m in s["minima"]:
        assert m["count"] == int((reached == m["index"]).sum())
        pts = camel.x[reached == m["index"]]
        assert np.all(np.linalg.norm(pts - np.array(m["point"]), axis=1) <= 1e-2)
    outcomes = ("converged", "step_limit", "diverging", "diverged", "interrupted")
    assert sum(s[k] for k in outcomes) == camel.n_points
    assert s["converged"] == int(camel.converged.sum()) > 0


def test_reached_is_the_nearest_minimum_within_tol_in_chunks(monkeypatch):
    # Himmelblau's four minima from a grid that reaches all of them, stops short of them
    # (lr too small for 40 steps) and diverges; chunks of 7 points, against all the
    # distances at once
    from descentlab.descent import trajectory

    run = dl.descend("himmelblau", dl.grid(15, bounds=(-6, 6)), lr=0.02, steps=40, blowup=8)
    monkeypatch.setattr(trajectory, "_CHUNK", 7)
    for tol in (1e-2, 0.5, 3.0):
        got = run.reached(tol)
        dist = np.linalg.norm(run.x[:, None, :] - np.array(run.minima)[None], axis=-1)
        near = dist.argmin(axis=1)
        ok = (dist.min(axis=1) <= tol) & (run.status != "diverged")
        np.testing.assert_array_equal(got, np.where(ok, near, -1))
    assert {-1, 0, 1, 2, 3} <= set(run.reached(0.5).tolist())
    assert (run.status == "diverged").any()


def test_to_frame_long_and_final(camel):
    long = camel.to_frame()
    assert len(long) == camel.path.shape[0] * camel.n_points
    assert list(long.columns) == ["step", "point", "x", "y", "value", "grad_norm"]
    row = long[(long.step == camel.recorded[3]) & (long.point == 5)].iloc[0]
    assert (row.x, row.y) == tuple(camel.path[3, 5])
    final = camel.to_frame(final=True)
    assert len(final) == camel.n_points
    assert isinstance(final.status.dtype, pd.CategoricalDtype)
    assert (final.minimum.to_numpy() == camel.reached()).all()


def test_multi_d_trace_format():
    run = dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=2)
    lines = run.trace_lines(final=True)
    assert lines[0] == "f(-0.4, -0.65) = 1.8e+02"
    assert len(lines) == 3


def test_repr_is_a_one_line_summary(camel):
    text = repr(camel)
    assert "six_hump_camel" in text and "144 points" in text and "\n" not in text


def _vm_flags(address: int) -> list[str]:
    """The kernel's flags for the mapping that holds `address` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if line.startswith("VmFlags:"):
                if inside:
                    return head[1:]
            elif "-" in head[0] and ":" not in head[0]:
                lo, hi = (int(a, 16) for a in head[0].split("-"))
                inside = lo <= address < hi
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(
    not os.path.isdir("/sys/kernel/mm/transparent_hugepage"),
    reason="not Linux, or a kernel without transparent huge pages",
)
def test_a_recording_asks_linux_for_huge_pages():
    """A recording's buffers are madvised for 2 MiB pages ("hg"), which made a fresh 800 MB
    recording fault 400 times instead of 200,000; torch's own allocator does not ask."""
    # 65 MB of positions: above glibc's largest mmap threshold (32 MB), so each buffer is a
    # fresh mapping, not reused heap that an earlier NumPy array had madvised
    rec = Recorder(rows=101, n=80_000, d=2, dtype=torch.float32)
    middle = rec.path.data_ptr() + rec.path.nbytes // 2
    assert "hg" in _vm_flags(middle)
    rec.coordinate_layout()
    assert "hg" in _vm_flags(rec.path.data_ptr() + rec.path.nbytes // 2)
    plain = torch.empty(101, 80_000, 2)
    assert "hg" not in _vm_flags(plain.data_ptr() + plain.nbytes // 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int8, torch.bfloat16])
def test_memory_empty_gives_the_shape_and_dtype_asked_for(dtype):
    t = empty((3, 5), dtype)
    assert t.shape == (3, 5) and t.dtype == dtype and t.is_contiguous()
    t.fill_(1)
    assert bool((t == 1).all())


def _resave(source, out, changes):
    """A saved trajectory's arrays with some replaced (the metadata given as JSON text)."""
    with np.load(source) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meta": np.array("[1, 2]")}, "metadata that is not a mapping"),
        ({"meta": np.array("null")}, "metadata that is not a mapping"),
        ({"status_": np.array([0, 7, 1, 2], dtype=np.int8)}, r"status codes must be 0-3 .*0\.\.7"),
        ({"steps_": np.array([3, -1, 2, 2])}, "negative step counts"),
        ({"x_": np.zeros((3, 2), dtype=np.float32)}, r"x has shape \(3, 2\), but path"),
        ({"path": np.zeros((5, 4), dtype=np.float32)}, "expected .rows, points, d."),
    ],
)
def test_a_damaged_file_is_refused_with_what_is_wrong(tmp_path, change, message):
    # these loaded, then failed in repr or summary (or with AttributeError on the metadata)
    good = dl.descend("himmelblau", [[0, 0], [1, 1], [2, 2], [-1, 1]], steps=3).save(
        tmp_path / "good.npz"
    )
    bad = _resave(good, tmp_path / "bad.npz", change)
    with pytest.raises(dl.LoadError, match=message):
        dl.load(bad)


def test_a_file_that_claims_more_than_it_holds_is_refused_before_reading(tmp_path, monkeypatch):
    import zipfile

    bomb = tmp_path / "bomb.npz"  # 100 MB of zeros in a few hundred kB
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("path.npy", bytes(100 * 2**20))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(dl.LoadError, match="expands 100 MiB from 0.10 MiB|expands 100 MiB"):
        dl.load(bomb)
    # arrays that would not fit in what the process may use
    good = dl.descend("sphere", (1.0, 1.0), steps=3).save(tmp_path / "good.npz")
    from descentlab import memory

    monkeypatch.setattr(memory, "memory_budget", lambda max_memory=None: 100.0)
    with pytest.raises(dl.LoadError, match="declares .* of arrays, more than"):
        dl.load(good)


def test_an_unreadable_file_says_so(tmp_path, monkeypatch):
    good = dl.descend("sphere", (1.0, 1.0), steps=3).save(tmp_path / "good.npz")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(good), "read_bytes", denied)
    with pytest.raises(dl.LoadError, match="permission denied"):  # it said "truncated"
        dl.load(good)


def test_divergence_in_progress_is_called_out():
    """d2l (11.3): gd at lr 0.6 on 0.1x² + 2y² from (-5, -2) ends 20 steps at x₂ ≈ -1673 with
    f ≈ 5.6e6, still running: named diverging in the repr, summary, notebook table and CLI."""
    import os
    import subprocess
    import sys

    run = dl.descend("0.1*x**2 + 2*y**2", start=(-5, -2), lr=0.6, steps=20)
    assert run.status == "diverging" and run.x[1] == pytest.approx(-1673.37, rel=1e-4)
    assert run.value == pytest.approx(5.6e6, rel=0.01)
    assert run.diverging and run.growth_[0] == pytest.approx(5.6003e6 / 10.5, rel=1e-3)
    assert "1 diverging (f grew a thousandfold" in repr(run) and "diverging" in run._repr_html_()
    assert run.summary()["diverging"] == 1
    # a rate that converges slowly is not
    calm = dl.descend("0.1*x**2 + 2*y**2", start=(-5, -2), lr=0.4, steps=20)
    assert not calm.diverging and calm.summary()["diverging"] == 0
    # many points, and a recording of the final state only (the first values from f)
    grid = dl.descend(
        "0.1*x**2 + 2*y**2", start=dl.grid(5, bounds=(-5, 5)), lr=0.6, steps=20, record="final"
    )
    s = grid.summary()
    # the 5 on y = 0 only see the x part, which shrinks (x = 0 is converged at its start)
    assert s["diverging"] == 20 and s["step_limit"] == 4 and s["converged"] == 1
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "descentlab.cli",
            "descend",
            "0.1*x**2 + 2*y**2",
            "--start",
            "-5,-2",
            "--lr",
            "0.6",
            "--steps",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "diverging: f grew 5.3e+05-fold in 20 steps" in done.stdout
    assert "try --lr 0.06" in done.stdout


def _rewrite(source, target, name, payload: bytes):
    """A copy of an .npz with one member's bytes replaced."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, payload if info.filename == name else src.read(info))


def test_load_refuses_devices_pipes_lying_headers_and_deep_metadata(tmp_path):
    with pytest.raises(dl.LoadError, match="not a regular file"):
        dl.load("/dev/zero")  # it read forever
    pipe = tmp_path / "pipe.npz"
    os.mkfifo(pipe)
    with pytest.raises(dl.LoadError, match="not a regular file"):
        dl.load(pipe)  # it waited for a writer forever
    good = dl.descend("booth", start=(0.0, 0.0), steps=3).save(tmp_path / "run.npz")
    with zipfile.ZipFile(good) as archive:
        path = archive.read("path.npy")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 1, 2)}
    )
    lying = tmp_path / "lying.npz"
    data_start = len(path) - 4 * 2 * 4  # the 4 rows x 1 point x 2 coordinates of float32
    _rewrite(good, lying, "path.npy", header.getvalue() + path[data_start:])
    with pytest.raises(dl.LoadError, match=r"claims 2,000,000,000,000 values of float32"):
        dl.load(lying)  # it raised MemoryError
    buf = io.BytesIO()
    np.save(buf, np.array("[" * 100_000 + "]" * 100_000))
    deep = tmp_path / "deep.npz"
    _rewrite(good, deep, "meta.npy", buf.getvalue())
    with pytest.raises(dl.LoadError, match="nested thousands deep"):
        dl.load(deep)  # it raised RecursionError
    assert dl.load(good).steps == 3
