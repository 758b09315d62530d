"""The explorer's pure helpers (tests/explorer/js/), run by Node's own test runner."""

import shutil
import subprocess
from pathlib import Path

from conftest import require_tool
from descentlab.explorer.server import STATIC

HERE = Path(__file__).parent / "js"


def test_the_front_ends_helpers_pass_node_test(tmp_path):
    node = require_tool("node")
    shutil.copy(STATIC / "explorer.js", tmp_path / "explorer.mjs")
    for test in HERE.glob("*.test.mjs"):
        shutil.copy(test, tmp_path / test.name)
    done = subprocess.run(
        [node, "--test", *sorted(p.name for p in tmp_path.glob("*.test.mjs"))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and "# pass 11" in done.stdout, done.stdout
