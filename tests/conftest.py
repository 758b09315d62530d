import os
import shutil

import pytest
import torch

REQUIRE_ALL = os.environ.get("DESCENTLAB_REQUIRE_ALL") == "1"
# no packaged kernels (descentlab.kernelcache) read from the user's cache or built in the
# background while tests run (subprocesses inherit this); tests of the cache set their own folder
os.environ["DESCENTLAB_KERNEL_CACHE"] = "off"


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


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
