"""Every optimizer offered: a batch equals running each point alone with torch.optim directly."""

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.descent import optimizers
from descentlab.problem.functions import rosenbrock

STARTS = torch.tensor([[-1.5, 2.0], [0.3, -0.4], [1.2, 1.1], [-0.7, 0.1]], dtype=torch.float64)


def alone(cls, kwargs, x0, steps, closure=False):
    """One point, the plain torch loop the seeds write: zero_grad, loss, backward, step."""
    x = x0.clone().reshape(1, -1).requires_grad_(True)
    opt = cls([x], **kwargs)
    path = [x.detach().clone()]

    def loss_and_grad():
        opt.zero_grad()
        loss = rosenbrock(x).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        if closure:
            opt.step(loss_and_grad)
        else:
            loss_and_grad()
            opt.step()
        path.append(x.detach().clone())
    return torch.cat(path)


@pytest.mark.parametrize("name", optimizers.names())
def test_batch_equals_each_point_alone(name):
    entry = optimizers.REGISTRY[name]
    lr = 1e-3 if entry.cls is not torch.optim.Adadelta else 1.0
    steps = 25
    run = dl.descend("rosenbrock", STARTS, optimizer=name, lr=lr, steps=steps, dtype=torch.float64)
    kwargs = {**entry.defaults, "lr": lr}
    if name == "newton":  # it takes f itself, for the Hessian
        kwargs["objective"] = rosenbrock
    for i in range(len(STARTS)):
        ref = alone(entry.cls, kwargs, STARTS[i], steps, closure=entry.needs_closure)
        np.testing.assert_allclose(
            run.path[:, i], ref.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )


def test_seed_step_equals_torch_sgd():
    ours = dl.descend("beale", STARTS, optimizer=dl.GradientDescent, lr=1e-3, steps=40)
    sgd = dl.descend("beale", STARTS, optimizer=torch.optim.SGD, lr=1e-3, steps=40)
    np.testing.assert_allclose(ours.path, sgd.path, rtol=1e-6)


def test_hyper_parameters_reach_the_optimizer():
    run = dl.descend(
        "rosenbrock", STARTS, optimizer="gd", lr=1e-3, momentum=0.5, steps=10, dtype=torch.float64
    )
    ref = alone(torch.optim.SGD, {"lr": 1e-3, "momentum": 0.5}, STARTS[0], 10)
    np.testing.assert_allclose(run.path[:, 0], ref.numpy(), rtol=1e-12)
    adam = dl.descend(
        "rosenbrock",
        STARTS,
        optimizer="adam",
        lr=1e-2,
        betas=(0.5, 0.9),
        steps=10,
        dtype=torch.float64,
    )
    ref = alone(torch.optim.Adam, {"lr": 1e-2, "betas": (0.5, 0.9)}, STARTS[1], 10)
    np.testing.assert_allclose(adam.path[:, 1], ref.numpy(), rtol=1e-12)


def test_sgd_is_an_alias_of_gd():
    assert optimizers.resolve("sgd").name == "gd"


def test_unknown_hyper_parameter_is_named_with_a_suggestion():
    with pytest.raises(dl.OptimizerError, match="adam does not take 'beta'; did you mean 'betas'"):
        dl.descend("sphere", (1.0, 1.0), optimizer="adam", beta=0.9)


def test_misspelled_descend_argument_is_caught():
    with pytest.raises(dl.DescentError, match="did you mean 'steps'"):
        dl.descend("sphere", (1.0, 1.0), step=10)


def test_unknown_optimizer_suggests():
    with pytest.raises(dl.UnknownNameError, match="did you mean 'rmsprop'"):
        dl.descend("sphere", (1.0, 1.0), optimizer="rmsprp")


def test_optimizer_instance_is_refused_with_the_fix():
    x = torch.zeros(1, requires_grad=True)
    with pytest.raises(dl.OptimizerError, match="pass the optimizer class"):
        dl.descend("sphere", (1.0, 1.0), optimizer=torch.optim.SGD([x], lr=0.1))


class NormalizedGD(torch.optim.Optimizer):
    """Steps by the gradient divided by the whole tensor's norm: couples the rows of a batch."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p -= group["lr"] * p.grad / (p.grad.norm() + 1e-12)


def test_an_unknown_coupling_optimizer_is_detected_and_run_point_by_point():
    plan = optimizers.resolve(NormalizedGD, lr=0.01)
    assert not plan.elementwise
    with pytest.warns(UserWarning, match="one by one"):
        run = dl.descend(
            "rosenbrock", STARTS, optimizer=NormalizedGD, lr=0.01, steps=5, dtype=torch.float64
        )
    for i in range(len(STARTS)):
        ref = alone(NormalizedGD, {"lr": 0.01}, STARTS[i], 5)
        np.testing.assert_allclose(run.path[:, i], ref.numpy(), rtol=1e-12)


def test_torch_adafactor_is_detected_as_coupling():
    assert not optimizers.resolve(torch.optim.Adafactor, lr=0.01).elementwise


def test_known_elementwise_classes_skip_the_probe():
    assert optimizers.resolve(torch.optim.Adam).elementwise
