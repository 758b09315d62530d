"""The compiled engine's C loop gives the eager engine's results for every registered
function with every compiled optimizer (float64, every iteration recorded, a tolerance set)."""

import numpy as np
import pytest
import torch
from test_engines_agree import both, same

import descentlab as dl
from descentlab import engine
from descentlab.descent.loop import Settings
from descentlab.descent.optimizers import resolve
from descentlab.problem import functions

# every registered function x every compiled optimizer, on the C loop, in float64: a 5 x 5 grid
# over the domain, 30 steps of a size a small fraction of the domain, every iteration recorded
REGISTRY_OPTIMIZERS = [
    ("gd", {}),
    ("momentum", {}),
    ("nesterov", {}),
    ("adagrad", {}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.5}),
    ("adam", {}),
]


def _registry_case(name: str, optimizer: str, extra: dict) -> dict:
    objective = functions.get(name, 2)
    start = dl.grid(5).points(2, objective.domain).double()
    width = max(hi - lo for lo, hi in objective.domain)
    if optimizer in ("gd", "momentum", "nesterov"):  # steps of about 1e-3 of the domain
        x = start.clone().requires_grad_()
        (g,) = torch.autograd.grad(objective.fn(x).sum(), x)
        lr = 1e-3 * width / (1.0 + float(g.abs().max()))
    else:  # adaptive steps are about lr long (RMSprop's first ten times that)
        lr = (1e-4 if optimizer == "rmsprop" else 1e-3) * width
    return dict(start=start.numpy(), optimizer=optimizer, lr=lr, steps=30, **extra)


@pytest.fixture(scope="module")
def registry_built():
    """Every (function, optimizer) loop built at once, one compiler per core."""
    settings = Settings.of(steps=30, tol=1e-8, limit=1e6)
    specs = []
    for name in functions.names():
        objective = functions.get(name, 2)
        for optimizer, extra in REGISTRY_OPTIMIZERS:
            plan = resolve(optimizer, 0.01, **extra)
            specs.append(engine.Spec.of(objective, plan, 2, torch.float64, "cpu", settings))
    engine.prebuild(specs)


@pytest.mark.slow
@pytest.mark.parametrize("name", functions.names())
def test_every_registered_function_with_every_compiled_optimizer_equals_eager(name, registry_built):
    for optimizer, extra in REGISTRY_OPTIMIZERS:
        kw = _registry_case(name, optimizer, extra)
        c, e = both(name, dtype="float64", record="all", tol=1e-8, **kw)
        scale = max(1.0, float(np.abs(e.values).max()))
        try:
            same(c, e, atol=1e-9 * scale, rtol=1e-9)
        except AssertionError as exc:
            raise AssertionError(f"{name} with {optimizer} {extra}: {exc}") from None
