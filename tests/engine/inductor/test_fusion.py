"""The graph pass that lets inductor run several steps in one loop changes no result, and does
what it is for: one loop over the points per call."""

import math

import pytest
import torch
from torch._inductor.utils import run_and_get_code

from descentlab.descent.optimizers import resolve
from descentlab.engine import Spec
from descentlab.engine.inductor.fusion import RowsPass
from descentlab.engine.inductor.loop import _lean
from descentlab.engine.updates import call_scalars, hyper, kind_of, packed_scalars, zero_state
from descentlab.problem import functions


def kernel(name, optimizer, substeps, passes):
    plan = resolve(optimizer, 0.01)
    kind = kind_of(plan)
    lean = _lean(Spec(functions.get(name), kind, False, 2, torch.float64), "plain", substeps)
    options = {"post_grad_custom_pre_pass": RowsPass()} if passes else None
    h = {k: float(v) for k, v in hyper(plan, torch.float64, "cpu").items()}
    packed = torch.tensor(packed_scalars(h, -math.inf, 1e9) + call_scalars(h, 0, substeps))
    return torch.compile(lean, options=options), kind, packed


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, optimizer",
    [("himmelblau", "adam"), ("rosenbrock", "gd")],
)
def test_four_fused_steps_equal_four_single_ones_and_fuse(name, optimizer):
    fused, kind, packed4 = kernel(name, optimizer, 4, passes=True)
    single, _, _ = kernel(name, optimizer, 1, passes=False)
    x = torch.rand(2, 2000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    state = zero_state(kind, x)
    (y, s), code = run_and_get_code(fused, x, state, packed4.double(), None, None)
    plan = resolve(optimizer, 0.01)
    h = {k: float(v) for k, v in hyper(plan, torch.float64, "cpu").items()}
    z, t = x, state
    for i in range(4):
        one = torch.tensor(packed_scalars(h, -math.inf, 1e9) + call_scalars(h, i, 1))
        z, t = single(z, t, one.double(), None, None)
    torch.testing.assert_close(y, z, rtol=1e-12, atol=1e-12)
    for a, b in zip(s, t, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if name == "himmelblau":  # reads x[..., 0] and x[..., 1]: the pass resolves every read
        assert code[0].count("for(int64_t x0") == 1, "the four steps were not fused into one loop"
