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


@pytest.fixture(autouse=True, scope="session")
def _as_if_dynamo_were_imported():
    """`auto` counts torch._dynamo's import as the eager engine's cost until something in the
    process has imported it, so the engine it picks for a small run would depend on which tests
    ran first. The suite fixes it as imported; the tests of that rule patch it themselves or
    run a fresh process."""
    from descentlab import compiled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled, "dynamo_imported", lambda: True)
        yield
