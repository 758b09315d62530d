"""A new user's first steps, outside the repository: the built wheel installed into a fresh
virtual environment (PyTorch from the wheel on disk, as the Makefile installs it), then
`descentlab tour` and `descentlab explore --no-browser` run from another folder, with no extra
installed: what works says so, what needs an extra says which."""

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The wheel built from a copy of the sources (the checkout stays clean) and installed
    into a new virtual environment; returns its bin folder."""
    base = tmp_path_factory.mktemp("new_user")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run = lambda *a, **k: subprocess.run(a, capture_output=True, text=True, **k)  # noqa: E731
    done = run(*pip, "wheel", "-q", "--no-deps", str(source), "-w", str(wheels), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = wheels.glob("descentlab-*.whl")
    env = base / "venv"
    venv.create(env, with_pip=True)
    python = str(env / "bin" / "python")
    torch = f"torch=={__import__('torch').__version__.split('+')[0]}"
    for what in ([torch], [str(wheel)]):  # torch first, as the Makefile: never a CUDA build
        done = run(python, "-m", "pip", "install", "-q", "--no-compile", *what, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    return env / "bin"


def test_the_tour_from_a_plain_install_writes_its_gallery_and_names_the_extras(fresh, tmp_path):
    done = subprocess.run(
        [str(fresh / "descentlab"), "tour", "--out", "gallery"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    page = (tmp_path / "gallery" / "index.html").read_text()
    assert "parabola_walk.png" in page and "Walking down a parabola" in page
    assert "descentlab[data]" in page  # the page names the extra a left-out section needs
    assert "needs mlxtend, pip install 'descentlab[data]'" in done.stderr + done.stdout
    assert "pip install 'descentlab[3d]'" in done.stderr + done.stdout
    assert "Seed" not in page and "seed 00" not in page


def test_explore_from_a_plain_install_serves_the_page_and_answers(fresh, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(fresh / "descentlab"), "explore", "--no-browser", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"descentlab explorer on http://127.0.0.1:{port}/?token=" in line, line
        token = line.split("?token=")[1].split()[0]
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        for _ in range(150):
            try:
                page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "descentlab explorer" in page
        script = urllib.request.urlopen(base + "/explorer.js", timeout=5).read().decode()
        assert "export default { render }" in script
        catalog = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(base + "/api/catalog", headers=headers), timeout=10
            ).read()
        )
        view = catalog["defaults"]
        asked = urllib.request.Request(
            base + "/api/run", data=json.dumps(view).encode(), headers=headers, method="POST"
        )
        reply = json.loads(urllib.request.urlopen(asked, timeout=60).read())
        assert [r["name"] for r in reply["runs"]] == ["gd", "momentum", "rmsprop", "adam"]
        assert reply["runs"][0]["status"] == ["converged"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
