"""The optimizer contract, checked on every class pytorch-optimizer registers (128 in 4.1.0,
torch.optim's six among them): each point of a descent follows the path it has when run alone,
as a ``(d,)`` parameter, in a plain torch loop with the same class and arguments (to 1e-12
relative, float64); or the class is refused, for a reason listed here by name.

Rosenbrock from 16 starts at mixed scales (uniform in [-2, 2]; three rows x100, one x1e-3),
lr 1e-3: 30 steps from all 16 here, 300 steps from 4 of them (one of each scale) in
test_every_optimizer_long.py, a file of its own so that the two halves run on two workers (6
and 2 starts for the classes run per point). Points that blow up are compared up to the step
descentlab stopped them at, and that stop is checked against the lone run. The classes
descentlab runs as one batched tensor are exactly those it lists as proven.
"""

import inspect
import warnings

import pytest
import torch
from pytorch_optimizer.optimizer import OPTIMIZERS

import descentlab as dl
from descentlab.descent import optimizers
from descentlab.problem.functions import rosenbrock

STARTS = torch.rand(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4 - 2
STARTS[[3, 7, 11]] *= 100
STARTS[13] *= 1e-3
LONG = [0, 3, 11, 13]  # the 300-step starts: one of each scale (uniform, x100, x1e-3)
# a class run per point is each point's lone run by construction (the batched classes are the
# ones a mixed batch can catch out): fewer starts check it, as much as the suite's time allows
SHORT_PER_POINT = [0, 1, 3, 11, 13, 14]
LONG_PER_POINT = [3, 13]

# how a user runs each class alone (the classes' own documentation says so)
# backward, then opt.step(closure), the closure doing zero_grad, loss, backward
CLOSURE = {"lbfgs", "bsam"}
FLOAT_CLOSURE = {"alig"}  # backward, then opt.step(lambda: float(loss))
CREATE_GRAPH = {"adahessian", "sophiah"}  # loss.backward(create_graph=True): Hessian products
# settings a class cannot be built without
EXTRA = {"ranger21": {"num_iterations": 300}, "bsam": {"num_data": 16}}
# L-BFGS's defaults take up to 20 iterations a step with 100 pairs of history, which costs
# minutes here in torch's own Python (alone as much as in descentlab); the same settings go
# to both runs
EXTRA["lbfgs"] = {"max_iter": 3, "history_size": 10}

# refused, each in one line naming why (a substring of descentlab's message)
REFUSED = {
    # Muon and its kin need param groups marked use_muon (matrices), which one vector is not
    "adago": "cannot build AdaGO",
    "adamuon": "cannot build AdaMuon",
    "distributedmuon": "cannot build DistributedMuon",
    "muon": "cannot build Muon",
    "muonclip": "cannot build MuonClip",
    "normuon": "cannot build NorMuon",
    # these take a model, not parameters
    "adalomo": "cannot build AdaLOMO",
    "lomo": "cannot build LOMO",
    "adammini": "cannot build AdamMini",
    # needs einops, which is not installed
    "demo": "You need to install `einops`",
    # matrices only
    "spectralsphere": "SpectralSphere only supports 2D parameters",
    # its own float32-only arange: in float64 its first step fails
    "fadam": "expected dtype float",
}


def lone(name, cls, kwargs, start, steps):
    """One point alone, a (d,) parameter, in the plain loop: zero_grad, loss, backward, step."""
    torch.manual_seed(0)
    x = start.clone().requires_grad_(True)
    opt = cls([x], **kwargs)
    path = [x.detach().clone()]

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x[None]).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.zero_grad()
        loss = rosenbrock(x[None]).sum()
        loss.backward(create_graph=name in CREATE_GRAPH)
        if name in CLOSURE:  # (SAM's kind perturb along the gradient they are given first)
            opt.step(closure)
        elif name in FLOAT_CLOSURE:
            opt.step(lambda loss=loss: float(loss))
        else:
            opt.step()
        path.append(x.detach().clone())
        if not torch.isfinite(x).all():
            break
    return torch.stack(path)


def descend(cls, kwargs, starts, steps):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the per-point notice, and the classes' own
        return dl.descend(
            rosenbrock, starts, optimizer=cls, steps=steps, dtype=torch.float64, **kwargs
        )


def check(name, steps, idx):
    return check_with(name, {"lr": 1e-3, **EXTRA.get(name, {})}, steps, idx)


def check_with(name, kwargs, steps, idx):
    """descentlab's run from STARTS[idx] against each point alone (name: pytorch-optimizer's,
    or a class)."""
    cls = OPTIMIZERS[name] if isinstance(name, str) else name
    name = name if isinstance(name, str) else cls.__name__.lower()
    if name in REFUSED:
        with pytest.raises(dl.OptimizerError, match=REFUSED[name]) as info:
            descend(cls, kwargs, STARTS[idx], steps)
        assert "\n" not in str(info.value)
        return
    run = descend(cls, kwargs, STARTS[idx], steps)
    assert run.meta["batched"] == optimizers.proven_elementwise(cls, kwargs), name
    if name in CREATE_GRAPH:
        assert run.meta["calling"] == "create_graph"
    for j, i in enumerate(idx):
        ref = lone(name, cls, kwargs, STARTS[i], steps).numpy()
        ours = run.path[:, j]
        if run.status[j] == "diverged":  # held at its last finite position from then on
            stop = run.steps_[j]
            beyond = ref[stop] if stop < len(ref) else ref[-1]
            far = abs(run.meta["blowup"])
            assert not (abs(beyond) < far).all() or not (ref.shape[0] > stop), (name, i)
            ours, ref = ours[:stop], ref[:stop]
        assert ours.shape == ref.shape, (name, i, ours.shape, ref.shape)
        torch.testing.assert_close(
            torch.from_numpy(ours), torch.from_numpy(ref), rtol=1e-12, atol=1e-300, msg=name
        )
    return run


NAMES = sorted(OPTIMIZERS)


@pytest.mark.parametrize("name", NAMES)
def test_every_class_30_steps(name):
    check(name, 30, list(range(16)) if proven(name) else SHORT_PER_POINT)


def proven(name: str) -> bool:
    return optimizers.proven_elementwise(OPTIMIZERS[name], {"lr": 1e-3})


PROVEN = sorted(
    name
    for name, cls in OPTIMIZERS.items()
    if cls.__name__ in optimizers.PROVEN["pytorch_optimizer"][1]
)


@pytest.mark.parametrize("name", PROVEN)
def test_proven_classes_hold_at_a_large_rate_and_other_betas(name):
    # what the proof varies besides lr 1e-3: lr 0.1, and betas where the class takes them
    cls = OPTIMIZERS[name]
    kwargs = {"lr": 0.1}
    betas = inspect.signature(cls.__init__).parameters.get("betas")
    if betas is not None:
        kwargs["betas"] = tuple(b**2 for b in betas.default)  # 0.9 -> 0.81, 0.999 -> 0.998
    run = check_with(name, kwargs, 300, LONG)
    assert run.meta["batched"]


TORCH_ELEMENTWISE = [
    torch.optim.Adamax,
    torch.optim.RAdam,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.Rprop,
    torch.optim.ASGD,
    torch.optim.SGD,
]


@pytest.mark.parametrize("cls", TORCH_ELEMENTWISE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_torch_classes_run_batched_and_equal_alone(cls, lr):
    kwargs = {"lr": lr, **({"momentum": 0.9, "nesterov": True} if cls is torch.optim.SGD else {})}
    run = check_with(cls, kwargs, 300, LONG)
    assert run.meta["batched"]


def test_the_proven_list_names_real_classes_that_run_batched():
    proven = optimizers.PROVEN["pytorch_optimizer"][1]
    by_name = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    assert proven <= set(by_name)
    for cls_name in proven:
        assert optimizers.resolve(by_name[cls_name], lr=1e-3).batched
    # settings the proof did not vary run per point
    assert not optimizers.resolve(by_name["Yogi"], lr=1e-3, weight_decay=0.1).batched
