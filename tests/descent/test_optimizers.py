"""Every optimizer offered: a batch equals running each point alone with torch.optim directly."""

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.descent import optimizers
from descentlab.problem.functions import rosenbrock

STARTS = torch.tensor([[-1.5, 2.0], [0.3, -0.4], [1.2, 1.1], [-0.7, 0.1]], dtype=torch.float64)


def alone(cls, kwargs, x0, steps, closure=False):
    """One point, a (d,) parameter, in the plain torch loop the examples write: zero_grad, loss,
    backward, step."""
    x = x0.clone().requires_grad_(True)
    opt = cls([x], **kwargs)
    path = [x.detach().clone()]

    def loss_and_grad():
        opt.zero_grad()
        loss = rosenbrock(x[None]).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        if closure:
            opt.step(loss_and_grad)
        else:
            loss_and_grad()
            opt.step()
        path.append(x.detach().clone())
    return torch.stack(path)


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


def test_an_unproven_class_runs_each_point_alone():
    plan = optimizers.resolve(NormalizedGD, lr=0.01)
    assert not plan.batched
    with pytest.warns(UserWarning, match="each of the 4 points runs alone as a"):
        run = dl.descend(
            "rosenbrock", STARTS, optimizer=NormalizedGD, lr=0.01, steps=5, dtype=torch.float64
        )
    assert not run.meta["batched"] and run.meta["calling"] == "plain"
    for i in range(len(STARTS)):
        ref = alone(NormalizedGD, {"lr": 0.01}, STARTS[i], 5)
        np.testing.assert_allclose(run.path[:, i], ref.numpy(), rtol=1e-12)


class RowWiseGD(torch.optim.Optimizer):
    """Element-wise for a vector, coupling for a matrix: normalizes each row of a 2-D
    parameter by the largest row norm (as optimizers with per-matrix trust ratios do).
    Run as a (1, d) row it would act unlike the (d,) vector a user writes."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                scale = p.grad.norm(dim=-1).max() if p.ndim > 1 else 1.0
                p -= group["lr"] * p.grad / scale


def test_a_point_is_a_vector_as_the_user_writes_it_even_alone():
    run = dl.descend(
        "rosenbrock", STARTS[:1], optimizer=RowWiseGD, lr=1e-3, steps=5, dtype=torch.float64
    )
    ref = alone(RowWiseGD, {"lr": 1e-3}, STARTS[0], 5)
    np.testing.assert_allclose(run.path[:, 0], ref.numpy(), rtol=1e-12)


def test_torch_adafactor_runs_per_point():
    assert not optimizers.resolve(torch.optim.Adafactor, lr=0.01).batched


def test_torch_element_wise_classes_run_batched_with_any_settings():
    assert optimizers.resolve(torch.optim.Adam, lr=0.01, amsgrad=True).batched
    assert optimizers.resolve(torch.optim.SGD, lr=0.01, weight_decay=0.1).batched


class NeedsCreateGraph(torch.optim.Optimizer):
    """Steps by the gradient plus the Hessian-vector product along it (needs the graph)."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                (hv,) = torch.autograd.grad(p.grad, p, p.grad.detach())
                p -= group["lr"] * (p.grad + 1e-3 * hv)


def test_a_class_that_needs_the_gradient_graph_gets_it_and_refuses_other_gradients():
    run = dl.descend(
        "rosenbrock", STARTS, optimizer=NeedsCreateGraph, lr=1e-4, steps=4, dtype=torch.float64
    )
    assert run.meta["calling"] == "create_graph"
    for i in range(len(STARTS)):
        x = STARTS[i].clone().requires_grad_(True)
        opt = NeedsCreateGraph([x], lr=1e-4)
        for _ in range(4):
            opt.zero_grad()
            rosenbrock(x[None]).sum().backward(create_graph=True)
            opt.step()
        np.testing.assert_allclose(run.x[i], x.detach().numpy(), rtol=1e-12)
    with pytest.raises(dl.OptimizerError, match="only grad='autograd' gives"):
        dl.descend("rosenbrock", STARTS, optimizer=NeedsCreateGraph, grad="central", steps=2)


def test_a_constructor_that_fails_is_one_line_naming_the_class():
    class Picky(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1, *, depth):
            super().__init__(params, {"lr": lr})

    with pytest.raises(dl.OptimizerError, match="cannot build Picky: TypeError: .*'depth'") as e:
        dl.descend("sphere", (1.0, 1.0), optimizer=Picky)
    assert "\n" not in str(e.value)
