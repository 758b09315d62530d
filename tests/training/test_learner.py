"""The seven-step loop: example 002's behaviour, stop rules, accumulation, LR tools, quality."""

import itertools
import math

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.cli.fit import learner_for
from descentlab.training import Callback, CancelFit


def quadratic(t, params):
    a, b, c = params
    return a * t**2 + b * t + c


@pytest.fixture
def seed_data():
    return dl.datasets.noisy_quadratic(seed=0)


def test_seed_002_loss_falls_at_every_one_of_ten_steps_and_prints_like_the_seed(seed_data, capsys):
    learn = dl.Learner(quadratic, params=3, data=seed_data, loss="mse", lr=1e-5)
    p0 = learn.model.params.detach().clone()
    learn.fit(10)
    losses = learn.history["loss"]
    assert len(losses) == 10 and all(b < a for a, b in itertools.pairwise(losses))
    printed = capsys.readouterr().out.split()
    assert [float(v) for v in printed] == losses  # print(loss.item()) per step, as apply_step
    time, speed = seed_data
    assert losses[0] == pytest.approx(float(((quadratic(time, p0) - speed) ** 2).mean()), rel=1e-6)


def test_seed_002_hand_written_steps_equal_the_learner(seed_data):
    time, speed = seed_data
    learn = dl.Learner(quadratic, params=3, data=seed_data, loss="mse", lr=1e-5, verbose=False)
    params = learn.model.params.detach().clone().requires_grad_()
    learn.fit(10)
    for _ in range(10):  # the example's apply_step, verbatim
        preds = quadratic(time, params)
        loss = ((preds - speed) ** 2).mean()
        loss.backward()
        params.data -= 1e-5 * params.grad.data
        params.grad = None
    assert torch.allclose(learn.model.params.detach(), params.detach(), rtol=1e-6)


def test_a_longer_fit_recovers_the_generating_coefficients(seed_data):
    time, speed = seed_data
    learn = dl.Learner(
        quadratic, params=3, data=seed_data, loss="mse", optimizer="lbfgs", verbose=False
    )
    learn.fit(100)
    fitted = learn.model.params.detach().double().numpy()
    lstsq = np.polyfit(time.numpy(), speed.numpy(), 2)  # the best quadratic, independently
    np.testing.assert_allclose(fitted, lstsq, rtol=1e-3, atol=1e-3)
    # generating coefficients 0.5 (t - 9.5)^2 + 1 = 0.5 t^2 - 9.5 t + 46.125, noise sd 1
    X = np.vander(time.numpy().astype(float), 3)
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)))
    assert np.all(np.abs(fitted - [0.5, -9.5, 46.125]) < 3 * se)


def test_polynomial_model_equals_the_function_model(seed_data):
    poly = dl.Learner(dl.models.Polynomial(2), data=seed_data, loss="mse", lr=1e-5, verbose=False)
    func = dl.Learner(
        quadratic,
        params=poly.model.params.detach().clone(),
        data=seed_data,
        loss="mse",
        lr=1e-5,
        verbose=False,
        init=False,
    )
    poly.fit(5)
    func.fit(5)
    np.testing.assert_allclose(poly.history["loss"], func.history["loss"], rtol=1e-6)


def test_accumulated_gradients_are_the_sum_of_the_separate_ones(seed_data):
    time, speed = seed_data
    lr = 1e-6
    learn = dl.Learner(
        quadratic, params=3, data=seed_data, loss="mse", lr=lr, zero_grad=False, verbose=False
    )
    p0 = learn.model.params.detach().clone()

    def grad(p):
        p = p.clone().requires_grad_()
        ((quadratic(time, p) - speed) ** 2).mean().backward()
        return p.grad

    g1 = grad(p0)
    p1 = p0 - lr * g1
    g2 = grad(p1)
    p2 = p1 - lr * (g1 + g2)  # without zero_grad the second step uses g1 + g2
    learn.fit(2)
    assert torch.allclose(learn.model.params.grad, g1 + g2, rtol=1e-5)
    assert torch.allclose(learn.model.params.detach(), p2, rtol=1e-6)


def test_too_high_a_learning_rate_stops_with_a_message(seed_data):
    learn = dl.Learner(quadratic, params=3, data=seed_data, loss="mse", lr=1.0, verbose=False)
    learn.fit(50)
    assert "lr=1" in learn.stop_reason and "try a smaller one such as lr=0.1" in learn.stop_reason
    assert learn.steps_done < 50


def test_target_loss_stops_the_fit(seed_data):
    learn = dl.Learner(
        quadratic, params=3, data=seed_data, loss="mse", optimizer="adam", lr=0.1, verbose=False
    )
    learn.fit(5000, target=5.0)
    assert learn.history.epochs[-1]["train_loss"] <= 5.0
    assert "target reached" in learn.stop_reason
    assert learn.epoch < 5000


class FakeValid(Callback):
    """Overrides the validation loss each epoch with a scripted sequence."""

    order = 10

    def __init__(self, values):
        self.values = list(values)

    def after_epoch(self, learn):
        learn.history.epochs[-1]["valid_loss"] = self.values[learn.epoch - 1]
        learn.history.epochs[-1]["weights"] = learn.model.params.detach().clone()


def test_early_stopping_patience_and_restore_best(seed_data):
    time, speed = seed_data
    learn = dl.Learner(
        quadratic, params=3, data=(time, speed), loss="mse", lr=1e-5, valid=4, verbose=False
    )
    script = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0]
    learn.fit(7, stop=[FakeValid(script), dl.EarlyStopping(patience=3)])
    assert learn.epoch == 6 and "did not improve for 3 epochs" in learn.stop_reason
    assert learn.restored_epoch == 3
    assert torch.equal(learn.model.params.detach(), learn.history.epochs[2]["weights"])


def test_min_delta_counts_small_gains_as_none(seed_data):
    learn = dl.Learner(
        quadratic, params=3, data=seed_data, loss="mse", lr=1e-5, valid=4, verbose=False
    )
    learn.fit(
        5, stop=[FakeValid([5.0, 4.99, 4.98, 4.97, 4.96]), dl.EarlyStopping(2, min_delta=0.1)]
    )
    assert learn.epoch == 3


def test_minibatches_are_seeded_and_cover_the_data():
    x = torch.randn(100, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    seen = []

    class Spy(Callback):
        def before_batch(self, learn):
            seen.append(len(learn.x))

    runs = []
    for _ in range(2):
        learn = dl.Learner(
            dl.models.Linear(3, 1),
            data=(x, y),
            loss="mse",
            lr=0.05,
            batch_size=32,
            seed=4,
            verbose=False,
            callbacks=[Spy()],
        )
        learn.fit(3)
        runs.append(learn.history["loss"])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 3 * math.ceil(100 / 32)


def test_callbacks_run_in_order_for_every_event():
    events = []

    class Log(Callback):
        def __init__(self, name, order):
            self.name, self.order = name, order

        def __getattr__(self, event):
            if event.startswith(("before_", "after_")):
                return lambda learn: events.append((self.name, event))
            raise AttributeError(event)

    x = torch.randn(10, 2)
    learn = dl.Learner(
        dl.models.Linear(2, 1),
        (x, x.sum(1)),
        lr=0.1,
        batch_size=5,
        verbose=False,
        callbacks=[Log("b", 2), Log("a", 1)],
    )
    learn.fit(1)
    assert events[:2] == [("a", "before_fit"), ("b", "before_fit")]
    assert sum(1 for e in events if e == ("a", "after_batch")) == 2
    assert events[-1] == ("b", "after_fit")


def test_a_callback_can_cancel_the_fit():
    class StopAt(Callback):
        def after_batch(self, learn):
            if learn.steps_done == 3:
                raise CancelFit("enough")

    x = torch.randn(10, 2)
    learn = dl.Learner(
        dl.models.Linear(2, 1), (x, x.sum(1)), lr=0.1, verbose=False, callbacks=[StopAt()]
    )
    learn.fit(10)
    assert learn.steps_done == 3 and learn.stop_reason == "enough"


def test_preds_at_recomputes_the_predictions_of_a_step(seed_data):
    time, _speed = seed_data
    learn = dl.Learner(quadratic, params=3, data=seed_data, loss="mse", lr=1e-5, verbose=False)
    learn.fit(4)
    p2 = learn.params_at(2)
    assert torch.allclose(learn.preds_at(2), quadratic(time, p2))
    assert torch.allclose(learn.preds_at(4), learn.model(time).detach())


def test_lr_find_suggests_a_rate_on_the_steep_part_and_restores_the_model():
    mnist = dl.datasets.mnist_sample()
    learn = dl.Learner(
        dl.models.MLP(784, 64, 10),
        data=mnist,
        loss="cross_entropy",
        optimizer="sgd",
        lr=0.1,
        batch_size=64,
        metrics=["accuracy"],
        valid=0.2,
        verbose=False,
    )
    before = [p.detach().clone() for p in learn.model.parameters()]
    found = learn.lr_find()
    assert 1e-2 <= float(found) <= 1.0
    i = int(np.argmin(np.abs(found.lrs - found.suggestion)))
    assert found.losses[i] < found.losses[0]  # the suggestion is where the loss is already falling
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters(), strict=True))
    assert learn.steps_done == 0 and learn.history["loss"] == []


def test_lr_sweep_after_a_fit_starts_from_the_initial_parameters(seed_data):
    learn = dl.Learner(quadratic, params=3, data=seed_data, loss="mse", lr=1e-5, verbose=False)
    learn.fit(10)
    trained = learn.model.params.detach().clone()
    table = dl.lr_sweep(learn, [1e-5], epochs=10)
    assert table.losses[0] == learn.history["loss"]  # the same fit, replayed from the start
    assert torch.equal(learn.model.params.detach(), trained)  # the Learner itself is untouched


def test_lr_sweep_too_low_good_too_high(seed_data):
    learn = dl.Learner(quadratic, params=3, data=seed_data, loss="mse", lr=1e-5, verbose=False)
    table = dl.lr_sweep(learn, [1e-8, 1e-5, 1e-2], epochs=20)
    low, good, high = table.itertuples()
    assert low.status == good.status == "step limit" and high.status == "diverged"
    assert good.final_loss < low.final_loss
    assert math.isnan(high.final_loss)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "model", "three_vs_seven", "target"),
    [
        ("mnist", "linear", False, 0.90),
        ("mnist", "mlp", False, 0.93),
        ("mnist", "linear", True, 0.96),
        ("digits", "linear", False, 0.93),
    ],
)
def test_quality_of_the_default_recipes_on_held_out_data(data, model, three_vs_seven, target):
    """What `descentlab fit DATA --model M` gives, on the 20% validation split (seed 0)."""
    learn, recipe = learner_for(data, model=model, three_vs_seven=three_vs_seven, verbose=False)
    learn.fit(recipe.epochs)
    assert learn.validate()["accuracy"] >= target


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": dl.models.Linear(5, 3)}, "cannot take inputs of shape"),
        (
            {"data": (torch.randn(10, 4), torch.arange(10) % 5)},
            "labels run from 0 to 4 but the model outputs 3",
        ),
        ({"data": (torch.randn(10, 4), torch.arange(10) % 2 - 1)}, "labels run from -1"),
        ({"data": (torch.randn(10, 4), torch.randn(10))}, "integer class labels"),
        ({"data": (torch.randn(0, 4), torch.zeros(0, dtype=torch.long))}, "empty"),
        (
            {"data": (torch.randn(10, 4), torch.zeros(9, dtype=torch.long))},
            "x has 10 examples but y has 9",
        ),
        ({"data": torch.randn(10, 4)}, "data must be"),
        ({"loss": "cross_entropi"}, "did you mean 'cross_entropy'"),
        ({"metrics": ["acc"]}, "unknown metric"),
        ({"valid": 1.5}, "valid must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lr": -1}, "lr must be"),
        ({"optimizer": "adamm"}, "did you mean"),
        ({"loss": "mse"}, "does not match targets"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs, message):
    args = {
        "model": dl.models.Linear(4, 3),
        "data": (torch.randn(10, 4), torch.randint(0, 3, (10,))),
        "loss": "cross_entropy",
        "verbose": False,
        **kwargs,
    }
    with pytest.raises(dl.DescentError, match=message) as info:
        dl.Learner(**args)
    assert "\n" not in str(info.value)


def test_function_model_needs_params():
    with pytest.raises(dl.DescentError, match="needs params="):
        dl.Learner(quadratic, data=(torch.arange(3.0), torch.arange(3.0)))


def test_lr_find_after_fit_sweeps_from_the_start_and_leaves_the_learner_as_it_was():
    # after fit it suggested 2e-06 (the trained model's loss barely falls at any rate) where a
    # new learner gets 6.6e-02: it now sweeps from the initial parameters, optimizer state and
    # batch order, and puts the fitted ones back
    data = dl.datasets.mnist_sample()

    def new():
        model = dl.models.MLP(784, 32, 10)
        return dl.Learner(
            model,
            data,
            loss="cross_entropy",
            optimizer="momentum",
            lr=0.05,
            batch_size=64,
            verbose=False,
            seed=0,
        )

    fresh = new().lr_find(num=40)
    learn = new()
    learn.fit(1)
    fitted = [p.detach().clone() for p in learn.model.parameters()]
    state = (learn.epoch, learn.steps_done, list(learn.history["loss"]))
    again = learn.lr_find(num=40)
    assert again.suggestion == fresh.suggestion
    np.testing.assert_array_equal(again.losses, fresh.losses)
    assert all(torch.equal(a, b) for a, b in zip(fitted, learn.model.parameters(), strict=True))
    assert (learn.epoch, learn.steps_done, list(learn.history["loss"])) == state
    from_here = learn.lr_find(num=40, from_start=False)  # the current model, as asked
    assert from_here.losses[0] < 0.8 * fresh.losses[0]


# ---- threads (issue 24: a small model on a busy 2-core machine ran 3x slower on 2 threads) --


def test_small_models_fit_on_one_thread_and_the_count_is_put_back():
    import torch

    from descentlab.training.threads import choose_threads

    seen = []

    class Threads(dl.Callback):
        def after_batch(self, learn):
            seen.append(torch.get_num_threads())

    m = dl.datasets.mnist_sample()
    before = torch.get_num_threads()

    def mlp(**kw):
        return dl.Learner(
            dl.models.MLP(784, 128, 10),
            (m.x[:640], m.y[:640]),
            loss="cross_entropy",
            batch_size=64,
            verbose=False,
            callbacks=[Threads()],
            **kw,
        )

    learn = mlp()
    assert learn.threads == 1 == choose_threads(101_770, 64)
    learn.fit(1)
    learn.lr_find(num=8)
    assert set(seen) == {1} and torch.get_num_threads() == before
    learn = mlp(threads=2)
    seen.clear()
    learn.fit(1)
    assert set(seen) == {2} and torch.get_num_threads() == before


def test_large_models_use_the_idle_cores(monkeypatch):
    import os

    import torch

    from descentlab.training import threads

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    big = (3_256_330, 64)  # MLP 784-4096-10, 1.3e9 flops a step
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert threads.choose_threads(*big) == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 2.0, 1.0))  # two cores busy
    assert threads.choose_threads(*big) == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert threads.choose_threads(*big) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_threads_must_be_a_count(bad):
    t, y = dl.datasets.noisy_quadratic(seed=0)
    with pytest.raises(dl.DescentError, match="threads must be a whole number from 1"):
        dl.Learner(lambda t, p: p[0] * t, params=1, data=(t, y), threads=bad, verbose=False)


@pytest.mark.parametrize("name", ["AdaHessian", "AliG"])
def test_hessian_and_closure_optimizers_fit_as_their_plain_loops(seed_data, name):
    # AdaHessian takes Hessian-vector products through the gradient's graph
    # (backward(create_graph=True)); AliG takes a closure that returns the loss as a float
    import pytorch_optimizer

    cls = getattr(pytorch_optimizer, name)
    time, speed = seed_data
    torch.manual_seed(0)
    learn = dl.Learner(
        quadratic, params=3, data=seed_data, loss="mse", optimizer=cls, lr=0.1, verbose=False
    )
    params = learn.model.params.detach().clone().requires_grad_()
    assert learn.plan.calling == {"AdaHessian": "create_graph", "AliG": "float closure"}[name]
    torch.manual_seed(0)
    learn.fit(10)
    torch.manual_seed(0)
    opt = cls([params], lr=0.1)
    for _ in range(10):
        opt.zero_grad()
        loss = ((quadratic(time, params) - speed) ** 2).mean()
        loss.backward(create_graph=name == "AdaHessian")
        opt.step(lambda loss=loss: float(loss)) if name == "AliG" else opt.step()
    torch.testing.assert_close(learn.model.params.detach(), params.detach(), rtol=1e-6, atol=0)
