"""The registry, swept: every function's minima, gradients, and domain facts."""

import math

import numpy as np
import pytest
import torch

import descentlab as dl
from descentlab.problem import functions

DESIGN_NAMES = [
    "sphere",
    "himmelblau",
    "six_hump_camel",
    "easom",
    "rosenbrock",
    "rastrigin",
    "ackley",
    "beale",
    "booth",
    "matyas",
    "goldstein_price",
    "levy",
    "styblinski_tang",
    "mccormick",
    "three_hump_camel",
    "griewank",
    "bohachevsky",
    "zakharov",
    "branin",
    "cross_in_tray",
    "eggholder",
    "holder_table",
    "drop_wave",
    "schwefel",
]
CASES = [
    (n, d) for n in functions.names() for d in ((2, 5) if functions.REGISTRY[n].any_dim else (2,))
]


def test_registry_has_every_design_function():
    assert sorted(functions.names()) == sorted(DESIGN_NAMES)


def test_minima_counts_from_the_literature():
    counts = {
        "himmelblau": 4,
        "six_hump_camel": 2,
        "branin": 3,
        "cross_in_tray": 4,
        "holder_table": 4,
    }
    for name, n in counts.items():
        assert len(functions.get(name).minima) == n


@pytest.mark.parametrize(("name", "dim"), CASES)
def test_value_at_every_minimum_is_the_minimum_value(name, dim):
    obj = functions.get(name, dim if dim != 2 else None)
    assert obj.minima
    for m in obj.minima:
        value = float(obj(torch.tensor(m, dtype=torch.float64)))
        assert value == pytest.approx(obj.minimum_value, abs=1e-9, rel=1e-12), m


@pytest.mark.parametrize(("name", "dim"), CASES)
def test_no_sampled_point_beats_the_listed_minimum(name, dim):
    obj = functions.get(name, dim)
    gen = torch.Generator().manual_seed(1)
    lo = torch.tensor([b[0] for b in obj.domain], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in obj.domain], dtype=torch.float64)
    pts = lo + (hi - lo) * torch.rand(50_000, dim, generator=gen, dtype=torch.float64)
    assert float(obj.fn(pts).min()) >= obj.minimum_value - 1e-9


@pytest.mark.parametrize(("name", "dim"), CASES)
def test_autograd_matches_central_differences(name, dim):
    """Independent check: numpy central differences on f in float64 at random domain points."""
    obj = functions.get(name, dim)
    rng = np.random.default_rng(7)
    lo = np.array([b[0] for b in obj.domain])
    hi = np.array([b[1] for b in obj.domain])
    pts = lo + (hi - lo) * rng.random((20, dim))
    x = torch.tensor(pts, requires_grad=True)
    (auto,) = torch.autograd.grad(obj.fn(x).sum(), x)
    f = lambda p: obj.fn(torch.tensor(p)).numpy()  # noqa: E731
    fd = np.zeros_like(pts)
    for j in range(dim):
        h = 1e-6 * np.maximum(1.0, np.abs(pts[:, j]))
        e = np.zeros(dim)
        e[j] = 1
        fd[:, j] = (f(pts + h[:, None] * e) - f(pts - h[:, None] * e)) / (2 * h)
    scale = np.maximum(1.0, np.abs(fd))
    assert np.all(np.abs(auto.numpy() - fd) <= 1e-4 * scale), name


@pytest.mark.parametrize("name", [n for n in functions.names() if n not in ("eggholder",)])
def test_gradient_vanishes_at_interior_minima(name):
    obj = functions.get(name)
    for m in obj.minima:
        x = torch.tensor(m, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(obj.fn(x), x)
        assert torch.isfinite(g).all()
        assert float(g.abs().max()) < 1e-5, (name, m)


def test_eggholder_minimum_lies_on_the_boundary():
    obj = functions.get("eggholder")
    (m,) = obj.minima
    assert m[0] == obj.domain[0][1] == 512.0


@pytest.mark.parametrize("name", ["ackley", "drop_wave", "schwefel", "cross_in_tray"])
def test_gradient_is_finite_where_a_square_root_reaches_zero(name):
    obj = functions.get(name)
    x = torch.zeros(2, dtype=torch.float32, requires_grad=True)
    (g,) = torch.autograd.grad(obj.fn(x), x)
    assert torch.isfinite(g).all()


def test_ackley_value_at_origin_is_zero_in_float32():
    assert abs(float(functions.get("ackley", dim=3)(torch.zeros(3, dtype=torch.float32)))) < 1e-6


def test_cross_in_tray_is_finite_and_exact_in_float32():
    obj = functions.get("cross_in_tray")
    pts = torch.rand(1000, 2, dtype=torch.float64) * 20 - 10
    f32 = obj.fn(pts.float())
    assert torch.isfinite(f32).all()
    a, b = pts[:, 0], pts[:, 1]
    naive = (
        -0.0001
        * (
            torch.abs(
                torch.sin(a) * torch.sin(b) * torch.exp(torch.abs(100 - pts.norm(dim=1) / math.pi))
            )
            + 1
        )
        ** 0.1
    )
    assert torch.allclose(f32.double(), naive, rtol=1e-5)


def test_d_dimensional_functions_take_dim():
    obj = functions.get("rastrigin", dim=5)
    assert obj.dim == 5 and len(obj.domain) == 5 and obj.minima == ((0.0,) * 5,)
    st = functions.get("styblinski_tang", dim=3)
    assert st.minimum_value == pytest.approx(-39.16617 * 3, abs=1e-4)


def test_fixed_dimension_functions_refuse_other_dims():
    with pytest.raises(dl.DescentError, match="2 dimensions only"):
        functions.get("himmelblau", dim=3)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(dl.UnknownNameError, match="did you mean 'himmelblau'"):
        functions.get("himelblau")


def test_names_accept_hyphens_and_case():
    assert functions.get("Six-Hump-Camel").name == "six_hump_camel"


def test_objective_call_accepts_lists():
    assert float(functions.get("booth")([1.0, 3.0])) == 0.0
    assert math.isclose(float(functions.get("goldstein_price")([0.0, -1.0])), 3.0)


@pytest.mark.parametrize("name", sorted(functions.EXPRESSIONS))
def test_every_2d_expression_is_the_registered_function(name):
    # what `descentlab show` prints for descend to accept: parsed, it is the same function
    # (float64, over the domain)
    from descentlab.problem.formula import parse

    objective = functions.get(name)
    gen = torch.Generator().manual_seed(3)
    lo, hi = (torch.tensor(b, dtype=torch.float64) for b in zip(*objective.domain, strict=True))
    x = lo + torch.rand(500, 2, generator=gen, dtype=torch.float64) * (hi - lo)
    torch.testing.assert_close(parse(functions.EXPRESSIONS[name])(x), objective.fn(x))


def test_every_fixed_2d_function_has_an_expression():
    fixed = {n for n in functions.names() if not functions.REGISTRY[n].any_dim}
    assert fixed == set(functions.EXPRESSIONS)
