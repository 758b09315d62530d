"""`dl.explore(...)`: the explorer as an anywidget. The kernel side here; then the real thing
in JupyterLab in headless Chromium: the widget renders the engine's walks, and a click in the
page reaches the kernel's traits."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import descentlab as dl
from conftest import CHROMIUM_FLAGS, require_module, require_tool
from descentlab.explorer import request
from descentlab.explorer.compute import unpack


def _talk(widget, content):
    sent = []
    widget.send = lambda msg, buffers=None: sent.append(msg)
    widget._on_message(widget, content, [])
    return sent


def test_widget_state_and_requests():
    w = dl.explore(
        "himmelblau",
        ["gd", ("momentum", {"momentum": 0.8})],
        lr=[0.01, 0.005],
        start=(-0.4, -0.65),
        steps=80,
    )
    assert (w.f, w.opt, w.lr, w.start, w.steps) == (
        "himmelblau",
        ["gd", "momentum"],
        [0.01, 0.005],
        [[-0.4, -0.65]],
        80,
    )
    assert w.hyper == [{}, {"momentum": 0.8}]
    assert w.catalog["limits"]["steps"] == request.LIMITS["steps"]
    (msg,) = _talk(w, {"type": "run", "id": 7, "request": w.request()})
    assert msg["type"] == "result" and msg["id"] == 7
    race = w.race()
    for run, (label, again) in zip(msg["reply"]["runs"], race, strict=True):
        assert run["label"] == label
        np.testing.assert_array_equal(unpack(run["path"]), again.path)


def test_widget_serves_plotly_and_answers_errors():
    w = dl.explore("booth", "gd", steps=5)
    (msg,) = _talk(w, {"type": "plotly"})
    assert "window.Plotly = Plotly" in msg["source"]
    (msg,) = _talk(w, {"type": "run", "id": 1, "request": {"f": "x**2 + (y"}})
    assert msg["reply"]["column"] == 8


def test_widget_explores_a_python_function():
    w = dl.explore(
        lambda x, y: (x - 1) ** 2 + 3 * torch.sin(y) ** 2,
        "adam",
        lr=0.1,
        start=(2.0, 1.0),
        steps=40,
        bounds=(-3, 3),
    )
    assert w.f == "python" and w.box == [-3.0, 3.0, -3.0, 3.0]
    (msg,) = _talk(w, {"type": "run", "id": 1, "request": w.request()})
    reply = msg["reply"]
    assert reply["cli"] is None and reply["f"]["box"] == [[-3.0, 3.0], [-3.0, 3.0]]
    direct = dl.descend(
        lambda x, y: (x - 1) ** 2 + 3 * torch.sin(y) ** 2,
        start=(2.0, 1.0),
        optimizer="adam",
        lr=0.1,
        steps=40,
    )
    np.testing.assert_array_equal(unpack(reply["runs"][0]["path"])[:, 0], direct.path[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"f": "himelblau"}, "did you mean"),
        ({"optimizers": ["adm"]}, "did you mean 'adam'"),
        ({"steps": 10**6}, "at most 5000 steps"),
    ],
)
def test_widget_refuses_bad_arguments_at_once(kwargs, message):
    with pytest.raises(dl.DescentError, match=message):
        dl.explore(**kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    require_module("jupyterlab")
    root = tmp_path_factory.mktemp("lab")
    cells = [
        "import descentlab as dl\n"
        "w = dl.explore('booth', ['gd', 'adam'], lr=[0.05, 0.3], start=(1.0, 1.0), steps=30)\n"
        "w",
        "print('STARTS', w.start)",
        "w.steps = 12",
    ]
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": c,
            }
            for c in cells
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "explore.ipynb").write_text(json.dumps(notebook))
    port, token = _free_port(), "descentlab-test"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".ws"),
    }
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.ip=127.0.0.1",
            "--allow-root",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=root,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}")
            break
        except OSError:
            if lab.poll() is not None or time.monotonic() > deadline:
                lab.kill()
                pytest.fail(f"JupyterLab did not start: {lab.stderr.read()[-2000:]!r}")
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/lab/tree/explore.ipynb?token={token}"
    lab.terminate()
    try:
        lab.wait(20)
    except subprocess.TimeoutExpired:
        lab.kill()


def _run_cell(page, i: int) -> None:
    """Run cell i, again if the kernel was not listening yet (its prompt stays blank)."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(i)
    for _ in range(5):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "(i) => /\\[[0-9*]+\\]/.test(document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
                ".querySelector('.jp-InputPrompt').textContent)",
                arg=i,
                timeout=10000,
            )
            return
        except Exception:
            continue
    raise AssertionError(f"cell {i} did not run")


def test_widget_in_jupyterlab(jupyterlab, tmp_path):
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(jupyterlab)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60000)
        page.wait_for_selector(".jp-StatusBar-Widget >> text=| Idle", timeout=60000)
        _run_cell(page, 0)
        try:
            page.wait_for_selector(
                ".jp-OutputArea .dlx[data-busy='0']", state="attached", timeout=60000
            )
        except Exception:
            page.screenshot(path=str(tmp_path / "failed.png"))
            print("SHOT", tmp_path / "failed.png", errors)
            raise
        page.wait_for_timeout(500)
        drawn = page.evaluate(
            "() => document.querySelector('.jp-OutputArea .dlx-map').data"
            ".filter(t => t.name === 'adam lr=0.3').map(t => t.x.filter(v => v !== null))[0]"
        )
        expected = dl.descend("booth", start=(1.0, 1.0), optimizer="adam", lr=0.3, steps=30)
        # (the kernel ran Adam on the C loop, which may end an ulp from torch.optim's)
        np.testing.assert_allclose(
            np.array(drawn, dtype=np.float32), expected.path[: expected.steps + 1, 0, 0], rtol=1e-6
        )
        # a click on the map adds a start in the kernel's widget
        xy = page.evaluate(
            """() => { const m = document.querySelector('.jp-OutputArea .dlx-map');
            const l = m._fullLayout;
            const r = m.getBoundingClientRect();
            return [r.left + l._size.l + l.xaxis.d2p(-4), r.top + l._size.t + l.yaxis.d2p(5)]; }"""
        )
        page.mouse.click(*xy)
        page.wait_for_timeout(300)
        page.wait_for_selector(".jp-OutputArea .dlx[data-busy='0']", state="attached")
        shots = Path(os.environ.get("DESCENTLAB_SHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "jupyterlab.png"))
        page.keyboard.press("Escape")
        _run_cell(page, 1)
        printed = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
        printed.wait_for(timeout=30000)
        text = printed.inner_text()
        # and the kernel's changes reach the page
        page.keyboard.press("Escape")
        _run_cell(page, 2)
        page.wait_for_function(
            "() => document.querySelector('.jp-OutputArea .dlx-steptext').textContent"
            " === 'step 0 / 12'",
            timeout=30000,
        )
        browser.close()
    starts = json.loads(text.split("STARTS", 1)[1].strip())
    assert starts[0] == [1.0, 1.0]
    assert len(starts) == 2 and starts[1] == pytest.approx([-4.0, 5.0], abs=0.1)
    assert not errors, errors


def test_outside_a_notebook_explore_serves_the_view_in_the_browser_until_ctrl_c(tmp_path):
    # a script at a terminal: dl.explore opens the same view on the local server; here .serve()
    # (what explore calls when stdout is a terminal), with a browser that opens nothing
    import signal

    code = (
        "import descentlab as dl\n"
        "w = dl.explore('rosenbrock', ['gd', 'adam'], lr=[0.001, 0.05], start=(1.5, -1))\n"
        "w.serve(browser=False)\n"
        "print('after', w.f)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("descentlab explorer on http://127.0.0.1:"), line
        url = line.split()[3]
        base, token = url.split("/?token=")
        catalog = None
        for _ in range(100):
            try:
                req = urllib.request.Request(
                    base + "/api/catalog", headers={"Authorization": f"token {token}"}
                )
                catalog = json.loads(urllib.request.urlopen(req, timeout=5).read())
                break
            except OSError:
                time.sleep(0.1)
        view = catalog["defaults"]
        assert view["f"] == "rosenbrock" and view["opt"] == ["gd", "adam"]
        assert view["lr"] == [0.001, 0.05] and view["start"] == [[1.5, -1]]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "descentlab explorer stopped" in out and "after rosenbrock" in out, out + err
    assert proc.returncode == 0 and "Traceback" not in err, err
    # not at a terminal (here, under pytest) explore returns the widget and says how to open it
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import descentlab as dl; print(type(dl.explore('booth')).__name__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "Explorer" and ".serve()" in done.stderr
