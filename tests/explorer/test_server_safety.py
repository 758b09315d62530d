"""The explorer's server, tried as a page of another site and as a careless client would, against
a real uvicorn server on 127.0.0.1: what it refuses, what it answers, what it stops."""

import contextlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from conftest import explorer_server
from descentlab.cli import app as cli
from descentlab.explorer import request, server

TOKEN = "safety-test-token"
# an lbfgs grid on a long formula: each of its 400 points runs alone, for many seconds
HEAVY = {
    "f": " + ".join(f"0.01*sin({i}*x)*cos(y+{i})" for i in range(1, 12)) + " + x**2 + y**2",
    "opt": ["lbfgs"],
    "grid": 20,
    "steps": 2000,
    "surface": 0,
}
LIGHT = {"f": "booth", "opt": ["gd"], "start": [[1.0, 1.0]], "steps": 10, "surface": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def port():
    with explorer_server(TOKEN) as number:
        yield number


def ask(port, path="/api/run", body=None, headers=None, method="POST", timeout=60):
    """(status, reply) of one request, its headers as given (the Host one included)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Authorization": f"token {TOKEN}",
        **(headers or {}),
    }
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=payload, headers={k: v for k, v in sent.items() if v})
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    # strict JSON: a nan or an infinity in a reply is not JSON a browser can read
    return answer.status, json.loads(text, parse_constant=lambda c: pytest.fail(c)) if text else {}


def test_a_page_from_elsewhere_cannot_drive_it(port):
    status, reply = ask(port, body=LIGHT, headers={"Host": f"evil.example:{port}"})
    assert status == 403 and "non-local Host 'evil.example" in reply["error"]
    status, reply = ask(
        port,
        body=LIGHT,
        headers={"Host": f"evil.example:{port}", "Content-Type": "text/plain", "Origin": "x"},
    )
    assert status == 403  # what a browser sends cross-site without asking first
    status, reply = ask(port, body=LIGHT, headers={"Content-Type": "text/plain"})
    assert status == 415 and "must be application/json" in reply["error"]
    status, reply = ask(port, body=LIGHT, headers={"Authorization": None})
    assert status == 403 and "needs the explorer's token" in reply["error"]
    status, _ = ask(port, body=LIGHT, headers={"Authorization": "token wrong-token"})
    assert status == 403
    status, _ = ask(port, path="/api/catalog", method="GET", headers={"Authorization": None})
    assert status == 403
    status, reply = ask(
        port, path=f"/api/catalog?token={TOKEN}", method="GET", headers={"Authorization": None}
    )
    assert status == 200 and reply["defaults"]["f"] == "himmelblau"
    for host in (f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}"):
        assert ask(port, body=LIGHT, headers={"Host": host})[0] == 200, host
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as page:  # the page needs none
        assert page.status == 200


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"f": "log(x) + y", "start": [[-1, 1]]}, "f is not finite at the start (-1, 1)"),
        ({"f": "sqrt(x) + y", "start": [[-1, 1]]}, "f is not finite at the start (-1, 1)"),
        ({"f": "x/0 + y", "start": [[1, 1]]}, "(f = inf)"),
        (
            {"f": "booth", "schedule": {"name": "onecycle", "pct_start": 1}},
            "pct_start must leave a step to each phase",
        ),
    ],
)
def test_ordinary_mistakes_are_answered_in_one_line(port, request_, message):
    status, reply = ask(port, body={**request_, "steps": 20, "surface": 0})
    assert status == 400 and message in reply["error"], reply


def test_replies_are_json_a_browser_reads_and_deep_json_is_refused(port):
    huge_rate = {"name": "exponential", "floor": 1e308}
    status, reply = ask(port, body={**LIGHT, "schedule": huge_rate})
    assert status == 200 and reply["runs"][0]["rates"][0] is None  # an infinite float32 rate
    status, reply = ask(port, body=b"[" * 20_000 + b"]" * 20_000)
    assert status == 400 and reply["error"] == "the request is not JSON"
    grid = {"f": "log(x) + y", "opt": ["gd"], "grid": 4, "steps": 5, "surface": 0}
    status, reply = ask(port, body=grid)  # a grid may cross where f is not defined
    assert status == 200 and None in reply["runs"][0]["final"]


def test_idle_and_half_sent_connections_are_closed(port, monkeypatch):
    monkeypatch.setattr(server, "HEAD_SECONDS", 1.0)
    for sent in (b"", f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAcc".encode()):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(sent)
            began = time.monotonic()
            assert s.recv(100) == b""  # closed by the server
            assert time.monotonic() - began < 4
    assert ask(port, path="/api/run", method="GET")[0] == 405
    status, reply = ask(port, path="/no/such/thing", method="GET")
    assert status == 404 and reply["error"] == "Not Found"


def test_a_half_sent_request_is_answered_and_closed(port, monkeypatch):
    monkeypatch.setattr(server, "BODY_SECONDS", 1.0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {TOKEN}"
            '\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"f":'.encode()
        )
        began = time.monotonic()
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 408") and time.monotonic() - began < 5


def _in_background(port, body, headers=None):
    out = {}

    def go():
        out["began"] = time.monotonic()
        out["answer"] = ask(port, body=body, headers=headers)
        out["took"] = time.monotonic() - out["began"]

    thread = threading.Thread(target=go)
    thread.start()
    return thread, out


@pytest.fixture
def unbudgeted(monkeypatch):
    """No budget: a heavy request runs (to try what stops it)."""
    monkeypatch.setitem(request.LIMITS, "seconds", 1e9)
    monkeypatch.setitem(request.LIMITS, "reply", 1e12)


def test_a_heavy_request_is_refused_before_it_runs_with_the_figure(port):
    began = time.monotonic()
    status, reply = ask(port, body=HEAVY)
    assert status == 400 and time.monotonic() - began < 2
    assert "s of work; the explorer runs at most 2 s a request: use at most" in reply["error"]
    # the case: 8 x lbfgs on a 50 x 50 grid with a 384-character formula
    formula = (HEAVY["f"] + " + 0.001*x*y") * 1
    worst = {**HEAVY, "f": formula, "opt": ["lbfgs"] * 8, "grid": 50, "steps": 200}
    status, reply = ask(port, body=worst)
    assert status == 400 and "s of work" in reply["error"]
    big = {"f": "booth", "opt": ["gd", "momentum", "rmsprop", "adam"], "grid": 50, "steps": 200}
    status, reply = ask(port, body=big)  # quick to run, 32 MB to send
    assert status == 400 and "the reply would be about 32 MB" in reply["error"]
    assert ask(port, path="/api/catalog", method="GET")[1]["limits"]["seconds"] == 2.0


def test_a_newer_request_from_the_same_page_stops_the_running_one(port, unbudgeted):
    heavy, first = _in_background(port, HEAVY, {"X-Descentlab-Page": "page-1"})
    time.sleep(1.0)
    began = time.monotonic()
    status, reply = ask(port, body=LIGHT, headers={"X-Descentlab-Page": "page-1"})
    assert status == 200 and reply["runs"][0]["steps"] == [10]
    assert time.monotonic() - began < 5  # not behind the heavy one (alone: tens of seconds)
    heavy.join(10)
    status, reply = first["answer"]
    assert status == 409 and "a newer request from this page replaced it" in reply["error"]


def test_a_request_whose_page_left_stops(port, unbudgeted):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        body = json.dumps(HEAVY).encode()
        s.sendall(
            f"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {TOKEN}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(1.0)
    began = time.monotonic()
    status, _ = ask(port, body=LIGHT, headers={"X-Descentlab-Page": "another page"})
    assert status == 200 and time.monotonic() - began < 5


def test_a_request_past_the_deadline_is_stopped(port, monkeypatch, unbudgeted):
    monkeypatch.setattr(server, "DEADLINE", 1.0)
    began = time.monotonic()
    status, reply = ask(port, body=HEAVY)
    assert status == 409 and "it ran past 1 s" in reply["error"]
    assert time.monotonic() - began < 5


def test_ctrl_c_stops_a_busy_server_at_once():
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "descentlab.cli", "explore", "booth", "--no-browser"),
            *("--port", str(port), "--token", TOKEN, "--budget", "1000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"?token={TOKEN}" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        while True:
            try:
                ask(port, path="/api/catalog", method="GET", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        _in_background_quietly(port)
        time.sleep(1.5)  # the heavy request is running
        proc.send_signal(signal.SIGINT)
        began = time.monotonic()
        assert proc.wait(timeout=10) == 130
        assert time.monotonic() - began < 5
        assert proc.stderr.read() == "descentlab explorer stopped\n"  # one line, no traceback
    finally:
        if proc.poll() is None:
            proc.kill()


def _in_background_quietly(port):
    def go():
        with contextlib.suppress(OSError):  # the server went away, as it should
            ask(port, body=HEAVY, timeout=30)

    threading.Thread(target=go, daemon=True).start()


def test_another_address_than_loopback_warns_and_keeps_the_token(monkeypatch):
    served = {}
    monkeypatch.setattr(server, "serve", lambda view, **kw: served.update(kw))
    monkeypatch.setattr("descentlab.cli.explore._port_free", lambda host, port: True)
    done = CliRunner().invoke(cli, ["explore", "--host", "0.0.0.0", "--no-browser"])
    assert done.exit_code == 0, done.output
    assert "warning: listening on 0.0.0.0: other machines on the network" in done.output
    assert served["token"] and f"?token={served['token']}" in done.output
    refused = CliRunner().invoke(cli, ["explore", "--host", "0.0.0.0", "--no-token"])
    assert refused.exit_code == 2 and "--no-token is for 127.0.0.1 only" in refused.output
    short = CliRunner().invoke(cli, ["explore", "--token", "abc", "--no-browser"])
    assert short.exit_code == 2 and "at least 8 printable characters" in short.output
    help_text = CliRunner().invoke(cli, ["explore", "--help"]).output
    words = " ".join(re.sub(r"[│╭╮╰╯─]", " ", help_text).split())
    assert "any other address lets the network reach the explorer" in words


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 1e6


def test_drags_do_not_wait_behind_a_heavy_request_and_memory_returns(port):
    # a heavy page: L-BFGS from a 4 x 4 grid, each point alone, about a second
    heavy = {"f": "himmelblau", "opt": ["lbfgs"], "grid": 4, "steps": 50, "surface": 0}
    assert ask(port, body=heavy)[0] == 200
    assert (
        ask(port, body={**LIGHT, "steps": 200})[0] == 200
    )  # its C loop built, as after a first drag
    before = _rss_mb()
    latencies, statuses, stop = [], [], time.monotonic() + 2

    heavies = []

    def heavy_loop():
        while time.monotonic() < stop:
            began = time.monotonic()
            statuses.append(ask(port, body=heavy, headers={"X-Descentlab-Page": "heavy"})[0])
            heavies.append(time.monotonic() - began)

    def dragging(page):
        x = 0.0
        while time.monotonic() < stop:
            x += 0.01
            drag = {**LIGHT, "start": [[x, 1.0]], "steps": 200}
            began = time.monotonic()
            statuses.append(ask(port, body=drag, headers={"X-Descentlab-Page": page})[0])
            latencies.append(time.monotonic() - began)

    threads = [threading.Thread(target=heavy_loop)]
    threads += [threading.Thread(target=dragging, args=(f"drag-{i}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(statuses) == {200} and len(latencies) > 16
    p95 = sorted(latencies)[int(0.95 * len(latencies))]
    assert p95 < request.LIMITS["seconds"], (p95, heavies, sorted(latencies)[-5:])
    # six clients that never read a large reply: the server's memory comes back
    large = {"f": "booth", "opt": ["gd", "adam"], "grid": 30, "steps": 200}  # about 6 MB each
    sockets = []
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        body = json.dumps(large).encode()
        s.sendall(
            f"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {TOKEN}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sockets.append(s)
    time.sleep(3)
    for s in sockets:
        s.close()
    assert ask(port, body=LIGHT)[0] == 200
    print(f"drag p95 {p95:.2f} s over {len(latencies)}; memory {_rss_mb() - before:+.0f} MB")
    assert _rss_mb() - before < 150
