"""The explorer's requests and replies (`explorer.compute`): the numbers are `race`'s, the glyphs
match independent computations, the copied code reproduces the screen, bad requests get a
message."""

import json
import math
import shlex

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import descentlab as dl
from descentlab.cli import app
from descentlab.explorer import request
from descentlab.explorer.compute import answer, unpack
from descentlab.explorer.request import LIMITS

HIMMELBLAU = {
    "f": "himmelblau",
    "opt": ["gd", "momentum", "rmsprop", "adam", "adagrad"],
    "lr": [0.01, 0.005, 0.01, 0.05, 0.3],
    "hyper": [{}, {"momentum": 0.8}, {}, {"betas": [0.8, 0.99]}, {}],
    "start": [[-0.4, -0.65], [1.5, -2.0]],
    "steps": 120,
}


# every reply test runs with a constant rate, and with a schedule (each step's rate then
# drives the arrows and the copies)
SCHEDULES = [None, {"name": "cosine", "warmup": 5}]


@pytest.fixture(scope="module", params=SCHEDULES, ids=["constant", "cosine-warmup"])
def reply(request):
    out = answer({**HIMMELBLAU, "schedule": request.param})
    assert "error" not in out, out
    out["asked"] = request.param
    return out


def _schedule(reply):
    asked = reply["asked"]
    return None if asked is None else (asked["name"], {"warmup": asked["warmup"]})


def _rates(run, T):
    """Each step's rate in a reply's run: its schedule's, or its constant lr."""
    if "rates" not in run:
        return np.full(T, run["lr"])
    rates = np.asarray(run["rates"])
    return rates[np.minimum(np.arange(T), len(rates) - 1)]


def test_paths_are_the_race_run_directly(reply):
    direct = dl.race(
        "himmelblau",
        start=[(-0.4, -0.65), (1.5, -2.0)],
        optimizers={
            "gd": "gd",
            "momentum": ("momentum", {"momentum": 0.8}),
            "rmsprop": "rmsprop",
            "adam": ("adam", {"betas": (0.8, 0.99)}),
            "adagrad": "adagrad",
        },
        lr={"gd": 0.01, "momentum": 0.005, "rmsprop": 0.01, "adam": 0.05, "adagrad": 0.3},
        steps=120,
        schedule=_schedule(reply),
    )
    for run, (_, expected) in zip(reply["runs"], direct, strict=True):
        np.testing.assert_array_equal(unpack(run["path"]), expected.path)
        np.testing.assert_array_equal(unpack(run["values"]), expected.values)
        assert run["steps"] == expected.steps_.tolist()
        if reply["asked"]:  # warm-up from 0 to lr over 5 steps, then the cosine down
            assert run["rates"] == expected.rates.tolist()
            assert run["rates"][:6] == pytest.approx([run["lr"] * k / 5 for k in range(6)])
    assert [r["label"] for r in reply["runs"]][1] == "momentum lr=0.005 (momentum=0.8)"


def test_surface_is_the_function_on_the_view(reply):
    f = reply["f"]
    assert f["box"] == [[-5.0, 5.0], [-5.0, 5.0]] and len(f["minima"]) == 4
    z = unpack(f["surface"]["z"])
    x, y = f["surface"]["x"], f["surface"]["y"]
    i, j = 17, 90  # row (y), column (x)
    expected = (x[j] ** 2 + y[i] - 11) ** 2 + (x[j] + y[i] ** 2 - 7) ** 2
    assert z[i, j] == pytest.approx(expected, rel=1e-6)


def test_gradient_glyph_is_the_finite_difference(reply):
    run = reply["runs"][0]
    path, g = unpack(run["path"]).astype(np.float64), unpack(run["glyphs"]["gradient_raw"])
    f = lambda p: (p[0] ** 2 + p[1] - 11) ** 2 + (p[0] + p[1] ** 2 - 7) ** 2  # noqa: E731
    h = 1e-6
    for t in (0, 7, len(path) - 1):
        for i in range(2):
            p = path[t, i]
            fd = [(f(p + h * e) - f(p - h * e)) / (2 * h) for e in np.eye(2)]
            np.testing.assert_allclose(g[t, i], fd, rtol=1e-4, atol=1e-4)
            # the thin arrow is -lr g
    arrow = unpack(run["glyphs"]["arrows"]["gradient"])
    lr = _rates(run, len(g))[:, None, None]  # 0.01, or the schedule's rate at each step
    np.testing.assert_allclose(arrow, -lr * g, rtol=1e-6, atol=1e-12)


def _moving(run):
    """Steps before each walk stopped (frozen points have no update to explain)."""
    T = unpack(run["path"]).shape[0]
    return [slice(0, min(T - 1, s)) for s in run["steps"]]


def test_momentum_share_and_gradient_step_add_up_to_the_update(reply):
    run = reply["runs"][1]
    a = {k: unpack(v) for k, v in run["glyphs"]["arrows"].items()}
    for i, live in enumerate(_moving(run)):
        total = a["gradient"][live, i] + a["momentum"][live, i]
        np.testing.assert_allclose(total, a["update"][live, i], rtol=2e-3, atol=1e-6)


def test_adaptive_states_explain_the_update(reply):
    """The update torch.optim took equals the formula applied to the rebuilt state: Adam's
    -lr m̂ / (√v̂ + eps), RMSprop's and Adagrad's -lr g / (√(...) + eps)."""
    rms, adam, adagrad = reply["runs"][2], reply["runs"][3], reply["runs"][4]
    for run, key, numerator, eps in (
        (adam, "√v̂", "first moment", 1e-8),
        (rms, "√E[g²]", "gradient", 1e-8),
        (adagrad, "√Σg²", "gradient", 1e-10),
    ):
        arrows = {k: unpack(v) for k, v in run["glyphs"]["arrows"].items()}
        scale = unpack(run["glyphs"]["readouts"][key])
        for i, live in enumerate(_moving(run)):
            expected = arrows[numerator][live, i] / (scale[live, i] + eps)
            np.testing.assert_allclose(
                arrows["update"][live, i], expected, rtol=5e-3, atol=1e-5, err_msg=key
            )


def test_python_copy_reproduces_the_numbers(reply):
    code = reply["python"].replace("race.plot()\n", "")
    scope = {}
    exec(code, scope)
    for run, (_, again) in zip(reply["runs"], scope["race"], strict=True):
        np.testing.assert_array_equal(unpack(run["path"]), again.path)


def test_cli_copy_reproduces_the_numbers(reply, monkeypatch):
    import importlib

    race_module = importlib.import_module("descentlab.descent.race")
    real, seen = race_module.race, []

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(race_module, "race", spy)
    argv = shlex.split(reply["cli"])
    assert argv[:2] == ["descentlab", "race"]
    done = CliRunner().invoke(app, argv[1:])
    assert done.exit_code == 0, done.output
    for run, (_, again) in zip(reply["runs"], seen[0], strict=True):
        np.testing.assert_array_equal(unpack(run["path"]), again.path)


def test_a_grid_runs_every_start_and_copies_as_a_grid():
    out = answer({"f": "booth", "opt": ["gd", "adam"], "grid": 7, "steps": 30, "surface": 0})
    assert "surface" not in out["f"]
    assert unpack(out["runs"][0]["path"]).shape == (31, 49, 2)
    assert "glyphs" not in out["runs"][0]
    assert "dl.grid(7, bounds=((-10.0, 10.0), (-10.0, 10.0)))" in out["python"]
    assert "--grid 7 --bounds '-10,10;-10,10'" in out["cli"]
    scope = {}
    exec(out["python"].replace("race.plot()\n", ""), scope)
    final = [r.value_ for _, r in scope["race"]]
    np.testing.assert_array_equal(final[1], out["runs"][1]["final"])


def test_a_formula_and_its_default_view():
    out = answer({"f": "x**2 + 10*y**2", "opt": ["gd"], "lr": [0.04], "steps": 50})
    assert out["f"]["box"] == [[-5.0, 5.0], [-5.0, 5.0]]
    path = unpack(out["runs"][0]["path"])
    x0, y0 = path[0, 0]
    # gd on a separable quadratic: each coordinate shrinks by (1 - 2 lr a) per step
    assert path[50, 0, 0] == pytest.approx(x0 * (1 - 2 * 0.04) ** 50, rel=1e-4)
    assert path[50, 0, 1] == pytest.approx(y0 * (1 - 20 * 0.04) ** 50, rel=1e-3, abs=1e-30)


def test_own_python_function():
    own = dl.Objective(lambda x: (x**2).sum(-1) + torch.sin(3 * x[..., 0]), dim=2, name="mine")
    out = answer({"f": "python", "opt": ["gd"], "lr": [0.05], "steps": 20}, own=own)
    assert out["runs"][0]["status"] == ["step limit"] and out["cli"] is None
    assert "f  # your function" in out["python"]
    assert "no Python function" in answer({"f": "python"})["error"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"f": "x**2 + (y"}, "at column 8"),
        ({"f": "himelblau"}, "did you mean 'himmelblau'"),
        ({"opt": ["adm"]}, "did you mean 'adam'"),
        ({"opt": []}, "at least one optimizer"),
        ({"opt": ["gd"] * 9}, "at most 8 optimizers"),
        ({"steps": 10**6}, "at most 5000 steps"),
        ({"steps": "many"}, "steps must be a whole number"),
        ({"grid": 60}, "2 to 50 starts per axis"),
        ({"start": [[0, 0]] * 65}, "use a grid for more"),
        ({"start": [[0, "a"]]}, "must be a number"),
        ({"start": [[0, math.inf]]}, "must be finite"),
        ({"start": [[1e9, 0]]}, "within ±1e6"),
        ({"f": "x**2"}, "two variables"),
        ({"f": "x" * 401}, "at most 400"),
        ({"lr": [-1]}, "must be in (0, 1000]"),
        ({"opt": ["gd"], "hyper": [{"momentum": 0.5}]}, "gd takes no setting 'momentum'"),
        ({"opt": ["adam"], "hyper": [{"betas": [0.9, 1.5]}]}, "betas of adam must be in [0, 1)"),
        ({"box": [1, 0, 0, 1]}, "lo < hi"),
        ({"opt": ["gd"] * 8, "grid": 50, "steps": 300}, "fewer starts or steps"),
        ([1, 2], "a request is a JSON object"),
        ({"schedule": {"name": "cosin"}}, "did you mean 'cosine'"),
        ({"schedule": {"name": "step"}}, "needs step_size="),
        ({"schedule": {"name": "step", "step_size": "ten"}}, "step_size must be a number"),
        ({"schedule": 5}, "a schedule is"),
    ],
)
def test_bad_requests_get_a_message(request_, message):
    out = answer(request_)
    assert message in out["error"], out
    assert "\n" not in out["error"]


def test_formula_error_carries_its_column():
    assert answer({"f": "x**2 + (y"})["column"] == 8


def test_limits_are_in_the_catalog():
    cat = request.catalog()
    assert cat["limits"] == LIMITS and "himmelblau" in cat["functions"]
    assert cat["optimizers"]["adam"]["hyper"] == {"betas": [0.9, 0.999]}
    assert cat["optimizers"]["adadelta"]["lr"] == 1.0


def test_a_reply_too_large_asks_for_every_kth_step_and_both_copies_reproduce_it(monkeypatch):
    import importlib

    from descentlab.explorer import request

    big = {"f": "booth", "opt": ["gd", "adam"], "grid": 40, "steps": 200}
    refused = answer(big)
    assert refused["every"] == 2 and "show every 2nd step" in refused["error"]
    out = answer({**big, "every": refused["every"]})
    assert len(json.dumps(out)) < request.LIMITS["reply"]
    run = out["runs"][0]
    # every 2nd step and the last step taken; the page counts rows
    assert run["recorded"][:3] == [0, 2, 4] and run["recorded"][-1] == max(run["taken"])
    assert run["steps"] == np.searchsorted(run["recorded"], run["taken"]).tolist()
    assert 0 < max(run["taken"]) <= 200 and len(run["taken"]) == 1600
    scope = {}
    exec(out["python"].replace("race.plot()\n", ""), scope)
    for got, (_, again) in zip(out["runs"], scope["race"], strict=True):
        np.testing.assert_array_equal(unpack(got["path"]), again.path)
    race_module = importlib.import_module("descentlab.descent.race")
    real, seen = race_module.race, []
    monkeypatch.setattr(race_module, "race", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    done = CliRunner().invoke(app, shlex.split(out["cli"])[1:])
    assert done.exit_code == 0, done.output
    for got, (_, again) in zip(out["runs"], seen[0], strict=True):
        np.testing.assert_array_equal(unpack(got["path"]), again.path)


def test_a_formula_in_three_variables_is_refused_with_a_fix_in_x_and_y():
    out = answer({"f": "x**2 + y**2 + z**2", "opt": ["gd"]})
    assert "has 3" in out["error"] and "x and y alone" in out["error"]
    assert "z" not in out["error"].split(":", 1)[1].replace("'x**2 + y**2 + z**2'", "")
    one = answer({"f": "x**2", "opt": ["gd"]})
    assert "x**2 + 0*y" in one["error"]


def test_a_setting_out_of_range_names_its_own_range():
    out = answer({"f": "booth", "opt": ["adamw"], "hyper": [{"weight_decay": 12}]})
    assert out["error"] == "weight_decay of adamw must be in [0, 10), got 12"
    out = answer({"f": "booth", "opt": ["momentum"], "hyper": [{"momentum": 1.5}]})
    assert out["error"] == "momentum of momentum must be in [0, 1), got 1.5"
    ok = answer({"f": "booth", "opt": ["adamw"], "hyper": [{"weight_decay": 2}], "steps": 5})
    assert "error" not in ok and ok["runs"][0]["hyper"] == {"weight_decay": 2.0}
