import contextlib
import gzip
import os
import shutil
import struct
import tempfile

import numpy as np
import pytest
import torch

REQUIRE_ALL = os.environ.get("DESCENTLAB_REQUIRE_ALL") == "1"
# no C loop read from or written to the user's cache while tests run: one folder for the run,
# made by the first process that loads this file (pytest's, or xdist's controller) and
# inherited by its workers and every subprocess, so the suite builds each loop once; tests of
# the cache set their own folder
if "DESCENTLAB_TEST_KERNELS" not in os.environ:
    _CACHE = tempfile.TemporaryDirectory(prefix="descentlab-test-kernels-")
    os.environ["DESCENTLAB_TEST_KERNELS"] = _CACHE.name
os.environ["DESCENTLAB_KERNEL_CACHE"] = os.environ["DESCENTLAB_TEST_KERNELS"]
os.environ.pop("DESCENTLAB_C_LOOP", None)


# headless Chromium, as root, with no network: without the background-networking flags it
# tries Google's hosts at every start
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_tool(name: str) -> str:
    """Path of an external tool; skip without it, except in CI (DESCENTLAB_REQUIRE_ALL=1)."""
    path = shutil.which(name)
    if path is None:
        if REQUIRE_ALL:
            pytest.fail(f"{name} is required in CI (DESCENTLAB_REQUIRE_ALL=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


def require_module(name: str):
    """Import a module; skip without it, except in CI (DESCENTLAB_REQUIRE_ALL=1)."""
    try:
        return __import__(name)
    except ImportError:
        if REQUIRE_ALL:
            pytest.fail(f"{name} is required in CI (DESCENTLAB_REQUIRE_ALL=1) but not installed")
        pytest.skip(f"{name} not installed")


@pytest.fixture
def cuda():
    """The CUDA device; skip without one, except where benchmarks/gpu.sh runs the CUDA tests
    (DESCENTLAB_REQUIRE_CUDA=1): there a skip would hide that nothing ran."""
    if not torch.cuda.is_available():
        if os.environ.get("DESCENTLAB_REQUIRE_CUDA") == "1":
            pytest.fail("a CUDA device is required (DESCENTLAB_REQUIRE_CUDA=1) but none is seen")
        pytest.skip("no CUDA device")
    return "cuda"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _as_if_dynamo_were_imported():
    """`auto` counts torch._dynamo's import as the eager engine's cost until something in the
    process has imported it, so the engine it picks for a small run would depend on which tests
    ran first. The suite fixes it as imported; the tests of that rule patch it themselves or
    run a fresh process."""
    from descentlab import engine

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "dynamo_imported", lambda: True)
        yield


# MNIST's IDX files, written here (tests of the readers and of `descentlab fit mnist --path`)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    head = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in files.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return files


@contextlib.contextmanager
def explorer_server(token: str):
    """The explorer's server as `descentlab explore` configures it, on a free port of
    127.0.0.1 in a thread of this process; yields the port."""
    import socket
    import threading
    import time

    import uvicorn

    from descentlab.explorer import server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(server.config(None, "127.0.0.1", port, token))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.stop_all("the tests are done")
        srv.should_exit = True
        thread.join(10)
