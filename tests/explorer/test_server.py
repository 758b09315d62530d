"""`descentlab explore`'s server: its files, its API, its limits, and the command."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from descentlab.cli import app as cli
from descentlab.explorer import server
from descentlab.explorer.compute import unpack
from descentlab.explorer.request import LIMITS

TOKEN = "server-test-token"


@pytest.fixture(scope="module")
def client():
    return TestClient(
        server.app(token=TOKEN),
        base_url="http://127.0.0.1:8765",
        headers={"authorization": f"token {TOKEN}"},
    )


def test_page_and_its_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="plotly.min.js"' in page.text
    assert 'import { start } from "./page.js"' in page.text
    for name, kind in (
        ("explorer.js", "javascript"),
        ("page.js", "javascript"),
        ("explorer.css", "css"),
        ("plotly.min.js", "javascript"),
    ):
        got = client.get(f"/{name}")
        assert got.status_code == 200 and kind in got.headers["content-type"], name
    assert "window.Plotly = Plotly" in client.get("/plotly.min.js").text  # offline, whole


def test_only_the_shipped_files_are_served(client):
    for name in ("compute.py", "..%2Fcompute.py", "server.py", "nothing.js"):
        assert client.get(f"/{name}").status_code == 404, name


def test_catalog_and_defaults(client):
    got = client.get("/api/catalog").json()
    assert got["defaults"]["f"] == "himmelblau" and got["limits"]["steps"] == LIMITS["steps"]
    assert set(got["optimizers"]) >= {"gd", "momentum", "adam", "lbfgs"}


def test_run(client):
    request = {
        "f": "himmelblau",
        "opt": ["gd", "adam"],
        "lr": [0.01, 0.05],
        "start": [[-0.4, -0.65]],
        "steps": 200,
    }
    got = client.post("/api/run", json=request)
    assert got.status_code == 200
    reply = got.json()
    assert [r["name"] for r in reply["runs"]] == ["gd", "adam"]
    assert unpack(reply["runs"][1]["path"]).shape == (201, 1, 2)


def test_bad_requests_leave_the_server_working(client):
    as_json = {"content-type": "application/json"}
    bad = client.post("/api/run", content=b"{not json", headers=as_json)
    assert bad.json()["error"] == "the request is not JSON"
    huge = client.post("/api/run", content=b"[" + b"1," * LIMITS["body"] + b"1]", headers=as_json)
    assert huge.status_code == 413 and "at most" in huge.json()["error"]
    slow = client.post("/api/run", json={"steps": 10**7})
    assert slow.status_code == 400 and "at most 5000 steps" in slow.json()["error"]
    assert client.get("/api/run").status_code == 405
    assert client.post("/api/run", json={"f": "booth", "steps": 5}).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_serves_on_localhost_and_stops_on_ctrl_c():
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "descentlab.cli",
            "explore",
            "booth",
            "--no-browser",
            "--port",
            str(port),
            "--steps",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/?token=" in line
        token = line.split("?token=")[1].split()[0]
        assert len(token) >= 24
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/catalog?token={token}"
                with urllib.request.urlopen(url) as r:
                    defaults = json.load(r)["defaults"]
                break
            except OSError:
                assert time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert defaults["f"] == "booth" and defaults["steps"] == 30
        # bound to the loopback address only
        addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
        for address in addresses - {"127.0.0.1", "::1"}:
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0, address
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130  # as any command stopped by Ctrl-C
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explore", "himelblau"], "did you mean 'himmelblau'"),
        (["explore", "x**2 + (y"], "column 8"),
        (["explore", "--optimizers", "gd,adm"], "did you mean 'adam'"),
        (["explore", "--steps", "100000"], "at most 5000 steps"),
        (["explore", "--lr", "0.1,0.2"], "--lr has 2 rates for 4 optimizers"),
        (["explore", "--port", "70000"], "--port must be from 1 to 65535"),
    ],
)
def test_command_errors(argv, message):
    done = CliRunner().invoke(cli, [*argv, "--no-browser"])
    assert done.exit_code == 2 and message in done.output, done.output


def test_port_in_use_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = CliRunner().invoke(cli, ["explore", "--no-browser", "--port", str(port)])
    assert done.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in done.output


def test_binding_elsewhere_is_a_choice(monkeypatch):
    assert server.url_for("0.0.0.0", 9000) == "http://127.0.0.1:9000/"
    assert os.environ.get("DESCENTLAB_EXPLORE_HOST") is None  # no hidden override
