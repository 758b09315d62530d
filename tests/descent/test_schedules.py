"""Learning-rate schedules: d2l's schedulers (12.11) reproduced, torch's schedulers stepped
exactly as a plain loop steps them, and every way in (descend, race, the Learner, the CLI)."""

import math

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.descent.schedules import resolve


def rates_of(schedule, lr, steps):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    made, out = resolve(schedule, steps)(opt), []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        made.step()
    return np.array(out)


# d2l's schedulers as the chapter writes them (called once per epoch, t = 0, 1, ...)
class SquareRootScheduler:
    def __init__(self, lr=0.1):
        self.lr = lr

    def __call__(self, num_update):
        return self.lr * pow(num_update + 1.0, -0.5)


class FactorScheduler:
    def __init__(self, factor=1, stop_factor_lr=1e-7, base_lr=0.1):
        self.factor, self.stop_factor_lr, self.base_lr = factor, stop_factor_lr, base_lr

    def __call__(self, num_update):
        self.base_lr = max(self.stop_factor_lr, self.base_lr * self.factor)
        return self.base_lr


class CosineScheduler:
    def __init__(self, max_update, base_lr=0.01, final_lr=0, warmup_steps=0, warmup_begin_lr=0):
        self.base_lr_orig, self.max_update, self.final_lr = base_lr, max_update, final_lr
        self.warmup_steps, self.warmup_begin_lr = warmup_steps, warmup_begin_lr
        self.max_steps = self.max_update - self.warmup_steps

    def get_warmup_lr(self, epoch):
        increase = (
            (self.base_lr_orig - self.warmup_begin_lr) * float(epoch) / float(self.warmup_steps)
        )
        return self.warmup_begin_lr + increase

    def __call__(self, epoch):
        if epoch < self.warmup_steps:
            return self.get_warmup_lr(epoch)
        if epoch <= self.max_update:
            self.base_lr = (
                self.final_lr
                + (self.base_lr_orig - self.final_lr)
                * (1 + math.cos(math.pi * (epoch - self.warmup_steps) / self.max_steps))
                / 2
            )
        return self.base_lr


def test_d2l_square_root():
    d2l = SquareRootScheduler(lr=0.1)
    np.testing.assert_allclose(rates_of("inverse_sqrt", 0.1, 30), [d2l(t) for t in range(30)])


def test_d2l_factor():
    d2l = FactorScheduler(factor=0.9, stop_factor_lr=1e-2, base_lr=2.0)
    expected = [d2l(t) for t in range(50)]  # its first value is already 2.0 x 0.9
    got = rates_of(("exponential", {"gamma": 0.9, "floor": 1e-2}), 2.0 * 0.9, 50)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_d2l_multi_factor():
    # d2l uses torch's MultiStepLR(trainer, milestones=[15, 30], gamma=0.5) at lr 0.5
    got = rates_of(("multistep", {"milestones": [15, 30], "gamma": 0.5}), 0.5, 50)
    assert list(got[[0, 14, 15, 29, 30, 49]]) == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


@pytest.mark.parametrize("warmup", [0, 5])
def test_d2l_cosine(warmup):
    d2l = CosineScheduler(max_update=20, base_lr=0.3, final_lr=0.01, warmup_steps=warmup)
    expected = [d2l(t) for t in range(30)]
    settings = {"final": 0.01, "warmup": warmup, "span": 20}
    np.testing.assert_allclose(rates_of(("cosine", settings), 0.3, 30), expected, rtol=1e-12)


def test_named_schedules_equal_torch_schedulers_in_a_plain_loop():
    """The walk with a schedule equals the plain torch loop stepping the same torch scheduler
    after each optimizer step; and the rate of each step is recorded."""
    start, lr, steps = torch.tensor([-1.2, 1.0], dtype=torch.float64), 1e-3, 60
    f = dl.functions.get("rosenbrock")
    for named, torch_one in (
        (
            ("step", {"step_size": 20, "gamma": 0.5}),
            lambda o: torch.optim.lr_scheduler.StepLR(o, 20, 0.5),
        ),
        (
            "onecycle",
            lambda o: torch.optim.lr_scheduler.OneCycleLR(
                o, max_lr=lr, total_steps=steps, cycle_momentum=False
            ),
        ),
    ):
        x = start.clone().requires_grad_(True)
        opt = torch.optim.SGD([x], lr=lr, momentum=0.9)
        sched, path, rates = torch_one(opt), [x.detach().clone()], []
        for _ in range(steps):
            rates.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            f(x).backward()
            opt.step()
            sched.step()
            path.append(x.detach().clone())
        for schedule in (named, torch_one):
            run = dl.descend(
                f,
                start=start.numpy(),
                optimizer="momentum",
                lr=lr,
                steps=steps,
                dtype="float64",
                schedule=schedule,
            )
            np.testing.assert_allclose(run.path[:, 0], torch.stack(path).numpy(), rtol=1e-12)
            np.testing.assert_allclose(run.rates, rates, rtol=1e-12)


def test_race_takes_one_schedule_per_entrant_and_the_learner_per_batch_or_epoch():
    r = dl.race(
        "booth",
        (0.0, 0.0),
        ["gd", "adam"],
        steps=40,
        schedule={"adam": ("step", {"step_size": 10, "gamma": 0.5})},
    )
    assert set(r["gd"].rates) == {0.01} and r["adam"].rates[[0, 10, 39]].tolist() == [
        0.01,
        0.005,
        0.00125,
    ]
    m = dl.datasets.mnist_sample()
    learn = dl.Learner(
        dl.models.Linear(784, 10),
        (m.x[:256], m.y[:256]),
        loss="cross_entropy",
        lr=0.1,
        batch_size=64,
        verbose=False,
    )
    rates = learn.fit(3, schedule="inverse_sqrt")["lr"]  # 4 batches an epoch, per batch
    np.testing.assert_allclose(rates, [0.1 / math.sqrt(t + 1) for t in range(12)])
    assert learn.lr == 0.1  # put back after the fit
    rates = learn.fit(3, schedule="inverse_sqrt", schedule_per="epoch")["lr"][12:]
    np.testing.assert_allclose(rates, np.repeat([0.1 / math.sqrt(e + 1) for e in range(3)], 4))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("cosin", "did you mean 'cosine'"),
        (("cosine", {"warmupp": 3}), "did you mean 'warmup'"),
        ("step", "needs step_size="),
        (("step", {"step_size": 0}), "step_size must be a whole number >= 1"),
        (("cosine", {"warmup": 50}), "must be shorter than the 20 steps"),
        (lambda opt: 3, "not a torch scheduler"),
        (42, "schedule must be a name"),
    ],
)
def test_bad_schedules_say_the_fix(schedule, message):
    with pytest.raises(dl.DescentError, match=message):
        dl.descend("booth", start=(0, 0), steps=20, schedule=schedule)


HIMMELBLAU_STARTS = np.concatenate(
    [dl.grid(6).points(2, ((-5, 5), (-5, 5))).numpy(), [[40.0, -40.0]]]
)


def _engines_agree(optimizer, schedule, record, steps=60):
    kw = dict(start=HIMMELBLAU_STARTS, optimizer=optimizer, lr=0.01, steps=steps, tol=1e-3)
    kw.update(schedule=schedule, record=record, dtype="float64")
    eager = dl.descend("himmelblau", engine="eager", **kw)
    compiled = dl.descend("himmelblau", engine="compiled", **kw)
    assert compiled.meta["engine"] == "compiled"
    np.testing.assert_allclose(compiled.path, eager.path, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(compiled.status, eager.status)
    np.testing.assert_array_equal(compiled.rates, eager.rates)
    # the schedule mattered: without it the walks end elsewhere
    constant = dl.descend("himmelblau", engine="eager", **{**kw, "schedule": None})
    assert not np.allclose(constant.x, eager.x)
    return compiled


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("record", ["all", "final"])
def test_the_c_loop_takes_each_steps_rate_as_eager_does(optimizer, record):
    # the rate as a per-step table (Adam's folded into its bias-corrected step size); a point
    # that diverges and points that converge on the way
    schedule = ("cosine", {"warmup": 5}) if record == "all" else ("step", {"step_size": 7})
    run = _engines_agree(optimizer, schedule, record)
    assert run.meta["kernel"] == "c"


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_inductor_takes_each_steps_rate_as_eager_does(optimizer, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_C_LOOP", "off")
    # blocks of 64 steps, replays of the points that stop, 4 steps per call when final
    run = _engines_agree(optimizer, ("step", {"step_size": 7, "gamma": 0.7}), "final", 150)
    assert run.meta["kernel"] == "inductor"


def test_a_schedule_that_changes_momentum_runs_eager():
    def cycling(opt):  # one-cycle with its momentum cycling, which the compiled updates fix
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=200)

    kw = dict(start=dl.grid(40), steps=200, optimizer="momentum", schedule=cycling)
    with pytest.raises(dl.DescentError, match="the schedule changes more than the rate"):
        dl.descend("booth", engine="compiled", **kw)
    assert dl.descend("booth", **kw).meta["engine"] == "eager"
    named = dl.descend("booth", engine="compiled", **{**kw, "schedule": "onecycle"})
    assert named.meta["engine"] == "compiled"  # descentlab's one-cycle keeps the momentum


def test_cli_schedule(tmp_path, monkeypatch):
    # in-process (a real process's exit status and stderr are checked in tests/cli)
    from typer.testing import CliRunner

    from descentlab.cli.app import app

    monkeypatch.setenv("COLUMNS", "200")

    def cli(*args):
        return CliRunner().invoke(app, list(args))

    done = cli("descend", "x**2", "--start", "5", "--lr", "0.3", "--steps", "30", "--schedule")
    assert done.exit_code == 2  # --schedule needs its name
    done = cli(
        "descend", "x**2", "--start", "5", "--lr", "0.3", "--steps", "30",
        "--schedule", "cosine", "--warmup", "5",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "cosine(warmup=5): rate 0 first, 0.3 highest" in done.stdout
    done = cli("descend", "x**2", "--start", "5", "--schedule", "step[step_size=10,gamma=0.5]")
    assert done.exit_code == 0 and "step(step_size=10, gamma=0.5)" in done.stdout
    for args, message in (
        (("--schedule", "cosin"), "did you mean 'cosine'"),
        (("--warmup", "5"), "--warmup goes with --schedule cosine"),
        (("--schedule", "step"), "needs step_size="),
    ):
        done = cli("descend", "x**2", "--start", "5", *args)
        assert done.exit_code == 2 and isinstance(done.exception, SystemExit)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_schedule_picture(tmp_path):
    from PIL import Image

    path = tmp_path / "rates.png"
    dl.plot.schedule(("cosine", {"warmup": 5}), lr=0.3, steps=30, path=path)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] > 400 and len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    run = dl.descend(
        "x**2",
        start=5.0,
        lr=0.3,
        steps=30,
        schedule=("warmup", {"warmup": 10}),
    )
    assert dl.plot.schedule(run) is not None


def test_an_optimizer_without_a_rate_is_refused_a_schedule_in_one_line():
    import pytorch_optimizer

    with pytest.raises(dl.OptimizerError, match="AliG has no learning rate to schedule"):
        dl.descend(
            "booth", start=(0, 0), steps=5, optimizer=pytorch_optimizer.AliG, schedule="cosine"
        )
