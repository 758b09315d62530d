"""What the process may allocate: free memory, the rlimits and the container's cgroup; and an
allocation that fails during a run, refused in one line."""

import subprocess
import sys

import pytest

from descentlab import memory

GB = 1e9


def _tree(root, files: dict):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cgroup_v2_limit_counts_droppable_cache_as_free(tmp_path):
    table = tmp_path / "cgroup"
    table.write_text("0::/user.slice/job\n")
    fs = tmp_path / "fs"
    _tree(
        fs,
        {
            "user.slice/job/memory.max": "4000000000\n",
            "user.slice/job/memory.current": "3000000000\n",
            "user.slice/job/memory.stat": "anon 2000000000\ninactive_file 500000000\n",
            "user.slice/memory.max": "max\n",
            "user.slice/memory.current": "3000000000\n",
        },
    )
    # 4 GB limit, 3 GB charged of which 0.5 GB is cache the kernel drops first: 1.5 GB left
    assert memory._cgroup_room(str(fs), str(table)) == pytest.approx(1.5 * GB)


def test_cgroup_the_tightest_ancestor_and_a_namespaced_root(tmp_path):
    table = tmp_path / "cgroup"
    table.write_text("0::/a/b\n")
    fs = tmp_path / "fs"
    _tree(
        fs,
        {
            "a/b/memory.max": "8000000000",
            "a/b/memory.current": "1000000000",
            "a/memory.max": "2000000000",
            "a/memory.current": "1500000000",
        },
    )
    assert memory._cgroup_room(str(fs), str(table)) == pytest.approx(0.5 * GB)
    # in a cgroup namespace the path names a folder that is not mounted: the root is the cgroup
    fs2 = tmp_path / "fs2"
    _tree(fs2, {"memory.max": "3000000000", "memory.current": "1000000000"})
    assert memory._cgroup_room(str(fs2), str(table)) == pytest.approx(2 * GB)


def test_cgroup_v1_and_no_limit(tmp_path):
    table = tmp_path / "cgroup"
    table.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    fs = tmp_path / "fs"
    _tree(
        fs,
        {
            "memory/docker/abc/memory.limit_in_bytes": "2147483648",
            "memory/docker/abc/memory.usage_in_bytes": "1073741824",
            "memory/docker/abc/memory.stat": "cache 10\ntotal_inactive_file 73741824\n",
        },
    )
    assert memory._cgroup_room(str(fs), str(table)) == pytest.approx(2147483648 - 1e9)
    _tree(fs, {"memory/docker/abc/memory.limit_in_bytes": str(2**63 - 4096)})  # unlimited
    assert memory._cgroup_room(str(fs), str(table)) == float("inf")
    assert memory._cgroup_room(str(fs), str(tmp_path / "missing")) == float("inf")


def _limited(code: str, limit: float = 3e9):
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=cap, timeout=240
    )


def test_the_address_space_limit_is_honoured_before_the_run():
    """The issue's case: `prlimit --as=3000000000 descentlab descend himmelblau --random
    50000000 --steps 20` died with torch's allocator traceback."""
    done = _limited(
        "import sys; from descentlab.cli import main; sys.argv = ['descentlab', 'descend', "
        "'himmelblau', '--random', '50000000', '--steps', '20']; main()"
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "under the address-space limit (ulimit -v); use --record final" in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: recording every step of 50,000,000 points")


def test_an_allocation_that_fails_during_a_run_is_refused_in_one_line():
    # the checks are told there is room (as when other processes take memory meanwhile)
    done = _limited(
        "import descentlab as dl; from descentlab import memory\n"
        "memory._available_memory = lambda: 1e12\n"
        "try:\n"
        "    dl.descend('himmelblau', start=dl.random(50_000_000), steps=20, record='final')\n"
        "except dl.MemoryNeedError as e:\n"
        "    print('REFUSED', e)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("REFUSED the run ran out of memory under the address-space")
    assert "could not allocate" in done.stdout
    # it records the final state only already: the advice names the points that fit
    assert "record='final'" not in done.stdout
    fits = int(done.stdout.split("use at most about ")[1].split()[0].replace(",", ""))
    assert 1_000_000 < fits < 50_000_000
    again = _limited(
        "import descentlab as dl\n"
        f"run = dl.descend('himmelblau', start=dl.random({fits}), steps=20, record='final')\n"
        "print('RAN', run.n_points)\n"
    )
    assert again.returncode == 0 and f"RAN {fits}" in again.stdout, again.stderr


def test_other_runtime_errors_pass_through():
    @memory.refuse_failed_allocations
    def broken():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        broken()
    assert memory.allocation_failure(MemoryError())
    assert memory.allocation_failure(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes")
    )
