"""The C backend's translation (`engine.c.trace`, `translate`, `expressions`): what it
translates equals autograd, and what it cannot translate it refuses."""

import math

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab import engine
from descentlab.engine.c import expressions, kernels
from descentlab.problem import functions
from descentlab.problem.gradients import Evaluator
from descentlab.problem.resolve import resolve


def objective(f, d=None):
    start = [[0.5] * d] if d else [[0.5]]
    return resolve(f, start, dim=d, dtype=torch.float64, device="cpu", need_grad=True).objective


def kernel(obj, dtype=torch.float64, kind="gd"):
    return kernels.kernel(engine.Spec(obj, kind, False, obj.dim, dtype, math.inf, False, True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_registered_function_is_translated_and_equals_autograd(dtype):
    # kernels.kernel checks its values and gradients against autograd's over the domain before
    # it hands the kernel out; here, at other points, and in 2 and 5 dimensions where it can
    gen = torch.Generator().manual_seed(5)
    for name, spec in functions.REGISTRY.items():
        for d in (2, 5) if spec.any_dim else (None,):
            obj = functions.get(name, dim=d)
            d = obj.dim
            made = kernel(obj, dtype)
            lo, hi = (torch.tensor(b, dtype=torch.float64) for b in zip(*obj.domain, strict=True))
            x = (lo + torch.rand(200, d, generator=gen, dtype=torch.float64) * (hi - lo)).to(dtype)
            want_v, want_g = Evaluator(obj)(x)
            got_v, got_g = made.evaluate(x)
            scale = float(want_g.abs().max()) + 1
            tol = 1e-4 if dtype == torch.float32 else 1e-11
            np.testing.assert_allclose(got_v, want_v, rtol=tol, atol=tol, err_msg=name)
            np.testing.assert_allclose(got_g, want_g, atol=tol * scale, err_msg=name)


def test_powers_round_as_torch_does():
    # torch computes x**2 as x*x, x**3 as x*x*x, x**-1 as 1/x ...: the C must too, or the two
    # engines part after a few steps
    x = torch.linspace(0.1, 7.0, 301, dtype=torch.float32)[:, None]
    for e in (0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5):
        obj = objective(lambda t, e=e: t[..., 0] ** e)
        got_v, got_g = kernel(obj, torch.float32).evaluate(x)
        want_v, want_g = Evaluator(obj)(x)
        if e in (0.5, -0.5, 2.5):
            # x**0.5 is torch.sqrt, which here rounds 44 of these 301 square roots an ulp
            # away from IEEE's (C's) correctly rounded one; x**2.5 is powf against Sleef's pow
            np.testing.assert_allclose(got_v, want_v, rtol=2.5e-7, err_msg=str(e))
        else:
            assert torch.equal(got_v, want_v), e
        np.testing.assert_allclose(got_g, want_g, rtol=1e-6, err_msg=str(e))


@pytest.mark.parametrize(
    "f",
    [
        lambda x: torch.addcmul(x[..., 0], x[..., 1], x[..., 2], value=0.3),
        lambda x: torch.addcmul(x[..., 0], x[..., 1], x[..., 2]),
        lambda x: torch.lerp(x[..., 0], x[..., 1], 0.1),
        lambda x: torch.lerp(x[..., 0], x[..., 1], 0.7),  # torch's other formula
        lambda x: x[..., 0].add(x[..., 1], alpha=0.37),
        lambda x: x[..., 0].sub(x[..., 1], alpha=0.37),
        lambda x: torch.rsub(x[..., 0], x[..., 1], alpha=0.37),
        lambda x: torch.addcdiv(x[..., 0], x[..., 1], x[..., 2], value=-0.3),
    ],
)
def test_fused_operations_round_as_torch_does(f):
    # torch's CPU kernels fuse the multiply into the add (one rounding, where the CPU has an
    # FMA): the C must too, to the bit (twice-rounded, these differ on 2-20 % of the points)
    obj = dl.Objective(fn=f, dim=3)
    x = torch.randn(4000, 3, generator=torch.Generator().manual_seed(2)) * 3
    got_v, got_g = kernel(obj, torch.float32).evaluate(x)
    want_v, want_g = Evaluator(obj)(x)
    assert torch.equal(got_v, want_v)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-6)


def test_integer_arithmetic_with_alpha_stays_integer():
    # in a float32 kernel an fma would take these int64s through float (5e7 needs 26 bits)
    def f(x):
        k = (x[..., 0] * 1e8).floor().to(torch.int64) + 1
        return k.add(k, alpha=5).to(x.dtype) + x[..., 1] ** 2

    obj = dl.Objective(fn=f, dim=2)
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(3))
    got_v, _ = kernel(obj, torch.float32).evaluate(x)
    assert torch.equal(got_v, Evaluator(obj)(x)[0])


def test_literals_are_exact():
    for value in (0.1, -2.5, 1e-30, 3.4e38, math.pi):
        for dtype in (torch.float32, torch.float64):
            text = expressions.literal(value, dtype)
            want = float(torch.tensor(value, dtype=dtype))
            assert float.fromhex(text.strip("()").rstrip("f")) == want
    assert expressions.literal(math.inf, torch.float32) == "((float)INFINITY)"
    assert expressions.literal(-math.inf, torch.float64) == "(-(double)INFINITY)"
    assert expressions.literal(math.nan, torch.float64) == "((double)NAN)"


M = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.5]])


@pytest.mark.parametrize(
    "f",
    [
        # atanh's gradient fills a fresh tensor with ones, then subtracts x**2 from it in place
        lambda x: torch.atanh(0.3 * x[..., 0]) ** 2 + torch.acosh(2 + x[..., 1] ** 2),
        lambda x: torch.logsumexp(x, -1),
        lambda x: x.abs().amax(-1) + x.mean(-1) ** 2,  # amax's gradient counts ties (int sum)
        lambda x: (x @ M.to(x.dtype) * x).sum(-1),  # mm
        lambda x: torch.einsum("ni,ij,nj->n", x, M.to(x.dtype), x),  # bmm
        lambda x: (torch.softmax(x, -1) * torch.tensor([1.0, 2.0, 3.0])).sum(-1),
        lambda x: -torch.log_softmax(x, -1)[..., 1],
        lambda x: torch.linalg.vector_norm(x, dim=-1) + x.norm(p=1, dim=-1),
        lambda x: torch.cat([x, x**2], -1).prod(-1) + torch.cumsum(x, -1)[..., -1] ** 2,
        lambda x: torch.where(x[..., 0] > 0, x[..., 0] ** 2, -x[..., 0]) + torch.relu(x).sum(-1),
    ],
)
def test_more_of_torch_is_translated_and_equals_autograd(f):
    obj = dl.Objective(fn=f, dim=3)
    made = kernel(obj, torch.float64)
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want_v, want_g = Evaluator(obj)(x)
    got_v, got_g = made.evaluate(x)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    ("f", "why"),
    [
        # control flow on the values (which needs a number from all the points): the trace
        # would hold one branch only
        (lambda x: x[..., 0] ** 2 if float(x.detach().sum()) > 0 else x[..., 0], "points"),
        # points that see each other: the descents would not be independent
        (lambda x: ((x - x.mean(0)) ** 2).sum(-1), "points"),
        # an operation the translator does not know
        (lambda x: torch.lgamma(x[..., 0] + 3), "lgamma"),
        # a matrix product over the points (each point's value from all of them)
        (lambda x: (x.T @ x).sum() + x[..., 0], "points"),
        # an in-place write into a view
        (lambda x: x.clone().select(-1, 0).mul_(2) ** 2, "view"),
    ],
)
def test_what_cannot_be_translated_is_refused(f, why):
    with pytest.raises(kernels.Unsupported, match=why):
        kernel(dl.Objective(fn=f, dim=2))  # as is: `descend` would refuse the mixing one


def test_a_wrong_translation_is_caught_before_it_runs(monkeypatch):
    # the check against autograd is the net under the translator: a mistranslated
    # multiplication must never reach a run
    monkeypatch.setitem(expressions.POINTWISE, "mul", "({a}) + ({b})")
    with pytest.raises(kernels.Unsupported, match="disagrees with autograd"):
        kernel(objective(lambda x: x[..., 0] * x[..., 1] + x[..., 0] ** 3, 2))
