"""Every example in the three texts, with the numbers they print (example 002's belong to the
Learner)."""

import subprocess
import sys

import pytest

import descentlab as dl

SEED_000 = """\
f(-3.0) = 1.5e+01
f(-1.6) = 6.9
f(-0.81) = 4.8
f(-0.42) = 4.2
f(-0.22) = 4.1
f(-0.11) = 4.0
f(-0.059) = 4.0
f(-0.031) = 4.0
f(-0.016) = 4.0
f(-0.0083) = 4.0"""


def test_seed_000_trace_from_the_api(capsys):
    run = dl.descend(lambda x: 1.2 * x**2 + 4, start=-3.0, lr=0.2, steps=10)
    run.print_trace()
    assert capsys.readouterr().out == SEED_000 + "\n"


def test_seed_000_trace_with_the_seeds_own_step_and_a_formula():
    run = dl.descend("1.2*x**2 + 4", start=-3, optimizer=dl.GradientDescent, lr=0.2, steps=10)
    assert "\n".join(run.trace_lines()) == SEED_000


def test_seed_000_trace_from_the_cli():
    cmd = [
        sys.executable,
        "-m",
        "descentlab.cli",
        "descend",
        "1.2*x**2 + 4",
        "--start",
        "-3",
        "--lr",
        "0.2",
        "--steps",
        "10",
        "--trace",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert done.stdout.startswith(SEED_000 + "\n")


def test_seed_001_converges_after_27_steps():
    run = dl.descend(lambda x: x**2, start=1.8, lr=0.1, tol=0.01)
    assert run.steps == 27
    assert run.converged
    assert f"Function minimum found in {run.steps} iterations. X = {run.x:.2f}" == (
        "Function minimum found in 27 iterations. X = 0.00"
    )
    # closed form: x_k = 1.8 * 0.8**k and |dx| = 3.6 * 0.8**k first drops below 0.01 at k = 27
    assert abs(float(run.x) - 1.8 * 0.8**27) < 1e-6
    assert 3.6 * 0.8**26 >= 0.01 > 3.6 * 0.8**27


def test_seed_001_gradient_three_ways():
    f = lambda x: x**2  # noqa: E731
    for method in ("autograd", "central", lambda x: 2 * x):
        dx = dl.gradient(f, 1.8, method=method)
        assert f"Gradient at x = 1.8: dx = {dx:.2}" == "Gradient at x = 1.8: dx = 3.6"
        assert abs(float(dx) - 3.6) < 1e-5


def test_seed_001_himmelblau_walk_from_the_article_start():
    run = dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=100)
    assert run.trace_lines()[0] == "f(-0.4, -0.65) = 1.8e+02"
    # gradient descent from the article's start ends in the minimum at (-2.805, 3.131)
    assert run.reached() == 1
    assert run.x == pytest.approx((-2.805118, 3.131312), abs=1e-4)
