"""The `descentlab` command: output, files, exit codes, and errors without tracebacks."""

import itertools
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import descentlab as dl
from descentlab.cli.app import app
from descentlab.problem import functions

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_functions_lists_every_registered_function():
    result = cli("functions")
    assert result.exit_code == 0
    for name in functions.names():
        assert name in result.output


def test_show_lists_every_minimum():
    result = cli("show", "himmelblau")
    assert result.exit_code == 0
    assert "4 point(s)" in result.output
    for x in ("-2.80512", "-3.77931", "3.58443"):
        assert x in result.output


def test_show_prints_a_formula_that_descend_accepts():
    # it printed the maths with ^, which descend rejects
    shown = cli("show", "goldstein_price").output
    (line,) = [ln for ln in shown.splitlines() if ln.startswith("f(x, y) = ")]
    formula = line.removeprefix("f(x, y) = ")
    assert "^" not in formula
    by_name = dl.descend("goldstein_price", (0.5, -0.5), lr=1e-5, steps=20, dtype="float64")
    by_text = dl.descend(formula, (0.5, -0.5), lr=1e-5, steps=20, dtype="float64")
    np.testing.assert_allclose(by_text.path, by_name.path, rtol=1e-12)
    assert "--dim D" in cli("show", "rastrigin").output  # any dimension: by its name


def test_the_summary_echoes_the_settings_and_names_the_step_limit():
    args = ["rosenbrock", "--start", "-1,1", "-O", "adam", "-o", "amsgrad=True", "--steps", "50"]
    result = cli("descend", *args)
    assert result.exit_code == 0, result.output
    assert "adam  lr=0.01, amsgrad=True" in result.output
    assert "step limit: stopped after 50 steps, still moving" in result.output
    assert "running" not in result.output
    many = cli("descend", "himmelblau", "--grid", "10", "--steps", "50", "--tol", "none").output
    assert "100 step limit" in many
    assert "100 converged" in cli("descend", "himmelblau", "--grid", "10").output


def test_descend_one_point_summary():
    result = cli(
        "descend",
        "himmelblau",
        "--start",
        "-0.4,-0.65",
        "--optimizer",
        "adam",
        "--lr",
        "0.05",
        "--steps",
        "500",
    )
    assert result.exit_code == 0, result.output
    assert "(-2.80512, 3.13131)" in result.output
    assert "minimum reached" in result.output


def test_descend_grid_and_save(tmp_path):
    path = tmp_path / "camel.npz"
    result = cli(
        "descend",
        "six_hump_camel",
        "--grid",
        "50",
        "--lr",
        "0.01",
        "--steps",
        "300",
        "--tol",
        "none",
        "--save",
        str(path),
    )
    assert result.exit_code == 0, result.output
    run = dl.load(path)
    assert run.n_points == 2500 and run.iterations == 300
    assert f"{run.summary()['minima'][0]['count']:,} points" in result.output


def test_descend_random_in_five_dimensions():
    result = cli(
        "descend",
        "rastrigin",
        "--dim",
        "5",
        "--random",
        "1000",
        "--seed",
        "0",
        "--optimizer",
        "rmsprop",
        "--lr",
        "0.01",
        "--steps",
        "50",
    )
    assert result.exit_code == 0, result.output
    assert "1,000" in result.output and "(dimension 5)" in result.output


def test_options_and_momentum_reach_the_optimizer(tmp_path):
    cli(
        "descend",
        "rosenbrock",
        "--start",
        "-1,1",
        "--optimizer",
        "adam",
        "-o",
        "betas=(0.5,0.9)",
        "--steps",
        "5",
        "--save",
        str(tmp_path / "a.npz"),
    )
    assert dl.load(tmp_path / "a.npz").meta["hyper"]["betas"] == [0.5, 0.9]
    cli(
        "descend",
        "rosenbrock",
        "--start",
        "-1,1",
        "--momentum",
        "0.7",
        "--steps",
        "5",
        "--save",
        str(tmp_path / "b.npz"),
    )
    assert dl.load(tmp_path / "b.npz").meta["hyper"]["momentum"] == 0.7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["descend", "himelblau", "--start", "0,0"], "did you mean 'himmelblau'"),
        (["descend", "x**2 + __import__('os')", "--start", "1"], "unknown function '__import__'"),
        (["descend", "himmelblau", "--start", "0,0", "--optimizer", "adma"], "did you mean"),
        (["descend", "himmelblau", "--start", "0,0,1"], "3 coordinates per point"),
        (["descend", "himmelblau", "--start", "0,nan"], "non-finite"),
        (["descend", "himmelblau", "--start", "a,b"], "is not numbers"),
        (["descend", "himmelblau", "--start", "0,0", "--lr", "-1"], "lr must be"),
        (["descend", "himmelblau", "--start", "0,0", "--steps", "-3"], "steps must be"),
        (["descend", "himmelblau", "--start", "0,0", "--tol", "-1"], "tol must be"),
        (["descend", "himmelblau"], "exactly one of --start, --grid or --random"),
        (["descend", "himmelblau", "--start", "0,0", "--grid", "3"], "exactly one"),
        (["descend", "himmelblau", "--start", "0,0", "-o", "nope"], "key=value"),
        # a setting the optimizer's constructor refuses, refused before the compiled engine
        # (which never builds the torch optimizer) could run into it
        (
            [
                "descend",
                "himmelblau",
                "--start",
                "0,0",
                "--optimizer",
                "adam",
                "-o",
                "betas=(0.9,2)",
            ],
            "cannot build adam: ValueError: Invalid beta parameter at index 1: 2",
        ),
        # the options to use, as the command line spells them (it said record='final')
        (["descend", "himmelblau", "--grid", "1000", "--steps", "100000"], "--record final"),
        (["descend", "x**2 + y**2", "--grid", "5"], "give --bounds LO,HI"),
        (["descend", "x**2 + y**2", "--dim", "3", "--start", "1,1"], "but --dim 3 was given"),
        # a misspelled name comes first, whatever else is missing
        (["descend", "himelblau"], "did you mean 'himmelblau'"),
        (["race", "himelblau"], "did you mean 'himmelblau'"),
        (["show", "rastrign"], "did you mean 'rastrigin'"),
        # printed as typed: Rich markup took "[blau]" (and "descentlab[scale]") for a style
        (["show", "himmel[blau]"], "unknown function 'himmel[blau]'"),
        (["fit", "quadratic", "--threads", "0"], "--threads must be a whole number from 1"),
        (["bench", "--schedule", "cosin"], "did you mean 'cosine'"),
        # an optimizer class by module:Class
        (
            ["descend", "booth", "--start", "0,0", "--optimizer", "pytorch_optimizer:Lamm"],
            "has no optimizer class 'Lamm'; did you mean pytorch_optimizer:Lamb?",
        ),
        (["descend", "booth", "--start", "0,0", "--optimizer", "nosuch:X"], "cannot import"),
        (
            ["descend", "booth", "--start", "0,0", "--optimizer", "pytorch_optimizer:Ranger21"],
            "cannot build Ranger21: TypeError: ",
        ),
        (["bench", "--warmup", "3"], "--warmup goes with --schedule cosine"),
        # race: settings per optimizer, and one rate each
        (["race", "booth", "--start", "0,0", "--lr", "0.1,0.2"], "--lr has 2 rates for 4"),
        (["race", "booth", "--start", "0,0", "--optimizers", "adam[betas=(0.9"], "must end with ]"),
        (["race", "booth", "--start", "0,0", "--optimizers", "gd[nope]"], "key=value"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(args, message):
    # in-process (a fresh interpreter per case cost a minute of the suite); the real process's
    # exit status and stderr are checked below
    done = runner.invoke(app, args)
    assert done.exit_code == 2 and isinstance(done.exception, SystemExit), done.output
    assert message in " ".join(done.stderr.split())
    assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["descend", "himelblau", "--start", "0,0"], "did you mean 'himmelblau'"),
        (["fit", "quadratic", "--lr", "-1"], "lr must be"),
    ],
)
def test_errors_in_a_real_process_have_no_traceback_and_exit_2(args, message):
    done = subprocess.run(
        [sys.executable, "-m", "descentlab.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert message in " ".join(done.stderr.split())
    assert done.stderr.strip().startswith("error:")


def test_saving_to_an_unwritable_place_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "descentlab.cli",
            "descend",
            "sphere",
            "--start",
            "1,1",
            "--steps",
            "2",
            "--save",
            str(blocker / "sub" / "run.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_ctrl_c_saves_what_was_computed(tmp_path):
    path = tmp_path / "partial.npz"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "descentlab.cli",
            "descend",
            "rastrigin",
            "--dim",
            "3",
            "--random",
            "20000",
            "--steps",
            "100000",
            "--record",
            "final",
            "--engine",
            "eager",
            "--save",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    time.sleep(10)  # at 6 s a loaded machine had not finished the first iteration
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    run = dl.load(path)
    assert (run.status == "interrupted").all()
    assert 0 < run.iterations < 100000


def test_fit_quadratic_prints_falling_losses_like_the_seed():
    result = cli("fit", "quadratic", "--epochs", "10", "--lr", "1e-5")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    losses = [float(v) for v in lines[:10]]
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert lines[10].startswith("train: loss")


def test_fit_digits_prints_an_epoch_table_and_accuracy():
    result = cli("fit", "digits", "--model", "linear", "--epochs", "30")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    accuracy = float(result.output.strip().splitlines()[-1].split("accuracy")[1])
    assert accuracy >= 0.93


def test_fit_three_vs_seven_and_lr_find():
    result = cli("fit", "mnist", "--three-vs-seven", "--model", "linear", "--epochs", "5")
    assert result.exit_code == 0 and float(result.output.split("accuracy")[-1]) >= 0.95
    found = cli("lr-find", "digits")
    assert found.exit_code == 0 and "suggested lr:" in found.output


def test_fit_mnist_idx_from_files(tmp_path):
    from conftest import write_mnist

    write_mnist(tmp_path, n_train=40, n_test=10, gz=True)
    result = cli("fit", "mnist-idx", "--path", str(tmp_path), "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "valid: loss" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "mnst"], "did you mean 'mnist'"),
        (["fit", "medmnist"], "needs --path"),
        (["fit", "mnist-idx", "--path", "/definitely/not/here"], "no such folder"),
        (["fit", "medmnist", "--path", "/definitely/not/here.npz"], "no such file"),
        (["fit", "digits", "--model", "resnet"], "unknown model 'resnet'"),
        (["fit", "digits", "--valid", "2"], "valid must be"),
        (["fit", "quadratic", "--lr", "-1"], "lr must be"),
    ],
)
def test_fit_errors(args, message):
    done = runner.invoke(app, args)
    assert done.exit_code == 2 and isinstance(done.exception, SystemExit), done.output
    assert message in " ".join(done.stderr.split())


def test_descend_writes_every_picture(tmp_path):
    files = {
        k: tmp_path / f"run.{ext}"
        for k, ext in (("plot", "png"), ("animate", "gif"), ("html", "html"))
    }
    result = cli(
        "descend",
        "himmelblau",
        "--start",
        "-0.4,-0.65",
        "--steps",
        "60",
        *[a for k, p in files.items() for a in (f"--{k}", str(p))],
    )
    assert result.exit_code == 0, result.output
    for p in files.values():
        # (Rich wraps a long path anywhere, even inside a name: compare without whitespace)
        assert p.stat().st_size > 10_000 and f"wrote{p}" in "".join(result.output.split())


def test_race_command(tmp_path):
    result = cli(
        "race",
        "himmelblau",
        "--start",
        "-0.4,-0.65",
        "--optimizers",
        "gd,momentum,adam,rmsprop",
        "--steps",
        "50",
        "--animate",
        str(tmp_path / "race.gif"),
    )
    assert result.exit_code == 0, result.output
    for name in ("gd", "momentum", "adam", "rmsprop"):
        assert name in result.output
    assert (tmp_path / "race.gif").exists()
    lrs = cli(
        "race",
        "x**2",
        "--start",
        "-1.5",
        "--optimizers",
        "gd",
        "--lrs",
        "0.01,0.3,1.05",
        "--steps",
        "20",
    )
    assert lrs.exit_code == 0 and "gd lr=1.05" in lrs.output


def test_bad_picture_paths_are_refused_before_the_run(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "descentlab.cli",
            "descend",
            "himmelblau",
            "--grid",
            "500",
            "--steps",
            "100000",
            "--animate",
            str(tmp_path / "x.avi"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "use one of .gif, .mp4" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_fit_pictures(tmp_path):
    result = cli(
        "fit",
        "quadratic",
        "--plot",
        str(tmp_path / "fit.png"),
        "--animate",
        str(tmp_path / "fit.gif"),
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fit.png").stat().st_size > 10_000 and (
        tmp_path / "fit.gif"
    ).stat().st_size > 10_000
    mnist = cli("fit", "digits", "--epochs", "2", "--plot", str(tmp_path / "loss.png"))
    assert mnist.exit_code == 0 and (tmp_path / "loss.png").exists()


def test_a_fit_whose_loss_runs_away_fails_with_the_reason():
    # it exited 0 and printed "train: loss inf" as a result
    done = subprocess.run(
        [sys.executable, "-m", "descentlab.cli", "fit", "quadratic", "--lr", "0.01"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "error: the loss became inf" in done.stderr and "try a smaller one" in done.stderr
    assert "train: loss" not in done.stdout


def test_a_loss_that_grows_a_hundredfold_is_called_diverging_before_it_is_infinite():
    from types import SimpleNamespace

    from descentlab.cli.fit import diverged

    def learner(losses):
        return SimpleNamespace(history={"loss": losses}, stop_reason=None, lr=0.5)

    assert "grew from 2 to 500 in 3 steps" in diverged(learner([2.0, 40.0, 500.0]))
    assert "try --lr 0.05" in diverged(learner([2.0, 40.0, 500.0]))
    assert diverged(learner([2.0, 1.0, 0.5])) is None
    assert diverged(learner([])) is None


def test_output_targets_are_checked_before_the_run(tmp_path):
    # a long run was lost to a target checked after it; a folder was named by the temporary
    # file's name
    (tmp_path / "taken.npz").mkdir()
    (tmp_path / "a_file").write_text("")
    cases = [
        (
            ["descend", "himmelblau", "--grid", "3", "--save", str(tmp_path / "taken.npz")],
            "is a folder; give a file name for the run",
        ),
        (
            ["descend", "himmelblau", "--grid", "3", "--save", str(tmp_path / "a_file" / "r.npz")],
            "it is not a folder",
        ),
        (
            [
                "bench",
                "--functions",
                "sphere",
                "--optimizers",
                "gd",
                "--out",
                str(tmp_path / "a_file" / "t.csv"),
            ],
            "it is not a folder",
        ),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "descentlab.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
        assert "function" not in done.stdout  # no summary: nothing ran


def test_a_save_removes_what_killed_saves_of_the_same_file_left(tmp_path):
    from descentlab.files import STALE_S

    old = tmp_path / ".run.k1ll3d.npz"  # as atomic_file names its temporary files
    old.write_bytes(b"x" * 1000)
    os.utime(old, (time.time() - 2 * STALE_S,) * 2)
    live = tmp_path / ".run.wr1t1ng.npz"  # another process writing right now: kept
    live.write_bytes(b"")
    other = tmp_path / ".other.k1ll3d.npz"  # another target's: not this save's business
    other.write_bytes(b"")
    os.utime(other, (time.time() - 2 * STALE_S,) * 2)
    dl.descend("sphere", (1.0, 1.0), steps=2).save(tmp_path / "run.npz")
    assert not old.exists() and live.exists() and other.exists()
    assert (tmp_path / "run.npz").is_file()


def test_an_installed_optimizer_class_is_named_module_colon_class(monkeypatch):
    # what the CLI runs equals dl.race with the classes themselves
    import importlib

    import pytorch_optimizer

    race_module = importlib.import_module("descentlab.descent.race")
    real, seen = race_module.race, []
    monkeypatch.setattr(race_module, "race", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    result = cli(
        "race", "booth", "--start", "1,2", "--steps", "40", "--lr", "0.05",
        "--optimizers", "pytorch_optimizer:AdaHessian,pytorch_optimizer:Lamb[weight_decay=0.01]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    adahessian, lamb = (run for _, run in seen[0])
    assert (
        adahessian.meta["calling"] == "create_graph"
        and adahessian.meta["optimizer"] == "AdaHessian"
    )
    direct = dl.race(
        "booth",
        start=(1.0, 2.0),
        optimizers={"lamb": (pytorch_optimizer.Lamb, {"weight_decay": 0.01})},
        lr=0.05,
        steps=40,
    )
    np.testing.assert_array_equal(lamb.path, direct["lamb"].path)
    assert lamb.meta["hyper"]["weight_decay"] == 0.01


def test_fit_draws_the_landscape_and_measures_sharpness(tmp_path):
    picture = tmp_path / "landscape.png"
    result = cli(
        "fit", "quadratic", "--landscape", "pca", "--resolution", "9", "--plot", str(picture)
    )
    assert result.exit_code == 0, result.output
    assert "train loss on the PCA plane: the plane explains" in result.output
    assert picture.stat().st_size > 20_000
    sharp = tmp_path / "sharpness.png"
    result = cli("fit", "quadratic", "--sharpness", "--plot", str(sharp))
    assert result.exit_code == 0, result.output
    # the example's quadratic fit: a fixed Hessian, far below its limit 2/lr = 2e5
    table = [line.split() for line in result.output.splitlines() if line[:6].strip().isdigit()]
    values = {float(row[1]) for row in table[-10:]}
    assert len(values) == 1 and 5e4 < values.pop() < 6e4
    assert "of the stability limit 2/η = 2e+05" in result.output
    assert sharp.stat().st_size > 20_000
    bad = runner.invoke(app, ["fit", "quadratic", "--landscape", "pcb"])
    assert bad.exit_code == 2 and "did you mean 'pca'" in bad.output
