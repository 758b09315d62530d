"""Formula strings: the language, its evaluation, and that nothing else gets through."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descentlab as dl
from descentlab.problem.formula import parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2*x**2 + 4", lambda x, y, z: 1.2 * x**2 + 4),
        (
            "(x**2 + y - 11)**2 + (x + y**2 - 7)**2",
            lambda x, y, z: (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2,
        ),
        ("sin(x) * cos(y) + exp(-z)", lambda x, y, z: math.sin(x) * math.cos(y) + math.exp(-z)),
        (
            "sqrt(abs(x)) + log(1 + y**2) / tanh(2)",
            lambda x, y, z: math.sqrt(abs(x)) + math.log(1 + y * y) / math.tanh(2),
        ),
        ("-pi * x + e**y - arctan(z)", lambda x, y, z: -math.pi * x + math.e**y - math.atan(z)),
        (
            "atan2(y, x) + hypot(x, y) + max(x, y)",
            lambda x, y, z: math.atan2(y, x) + math.hypot(x, y) + max(x, y),
        ),
        ("sinh(x) + cosh(y) - tau", lambda x, y, z: math.sinh(x) + math.cosh(y) - math.tau),
    ],
)
def test_formulas_evaluate_like_python_math(text, expected):
    f = parse(text)
    pt = (0.3, -1.2, 0.7)
    value = float(f(torch.tensor(pt[: f.dim], dtype=torch.float64)))
    assert value == pytest.approx(expected(*pt), rel=1e-12)


def test_himmelblau_formula_equals_the_registry_function():
    f = parse("(x**2 + y - 11)**2 + (x + y**2 - 7)**2")
    pts = torch.rand(100, 2, dtype=torch.float64) * 10 - 5
    assert torch.allclose(f(pts), dl.functions.get("himmelblau").fn(pts))


def test_dimension_from_variables():
    assert parse("x").dim == 1
    assert parse("y**2").variables == ("x", "y")
    assert parse("x1 + x4").dim == 4
    assert parse("z").dim == 3


def test_formula_descends_to_a_himmelblau_minimum():
    run = dl.descend("(x**2 + y - 11)**2 + (x + y**2 - 7)**2", start=(0, 0), lr=0.01)
    assert run.x == pytest.approx((3.0, 2.0), abs=1e-3)


BAD = [
    ("__import__('os')", "unknown function '__import__' at column 1"),
    ("x + __import__('os').system('ls')", "only plain function names can be called"),
    ("x.real", "attribute access is not allowed: 'x.real' at column 1"),
    ("(lambda: 1)()", "only plain function names"),
    ("lambda: x", "a lambda is not allowed"),
    ("[x for x in y]", "a comprehension is not allowed"),
    ("x if y else 1", "an if-expression is not allowed"),
    ("x < 1", "a comparison is not allowed"),
    ("x[0]", "indexing is not allowed"),
    ("x^2", "write x\\*\\*2"),
    ("x // 2", "'//' is not allowed"),
    ("2x", "write multiplication explicitly"),
    ("sine(x)", "did you mean 'sin'"),
    ("x + q", "unknown name 'q' at column 5"),
    ("sin(x, y)", "sin takes 1"),
    ("sin(x=1)", "keyword or starred"),
    ("'x'", "not a real number"),
    ("True + x", "not a real number"),
    ("1j * x", "not a real number"),
    ("3", "has no variable"),
    ("", "empty"),
    ("x1 + y", "not both"),
    ("x" + "+x" * 600, "limit is 1000"),
    ("sin(" * 70 + "x" + ")" * 70, "nested"),
    ("(" * 250 + "x" + ")" * 250, "too many nested parentheses"),
    ("-" * 200 + "x", "nested"),
    ("x\x00", "invalid syntax"),
    ("sin", "write sin\\(x\\)"),
    ("x; import os", "invalid syntax"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_formulas_give_one_line_errors(text, message):
    with pytest.raises(dl.FormulaError, match=message) as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_unknown_bare_name_is_an_unknown_function_not_a_formula():
    with pytest.raises(dl.UnknownNameError, match="did you mean 'rastrigin'"):
        dl.descend("rastrign", start=(1, 1))


ALPHABET = "xyz0123456789+-*/()., ^_eipsnaclogrtqmh%[]<>=!'\"\\:;\n\t{}@#&|~`"


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(ALPHABET, max_size=60), st.text(max_size=40)))
def test_fuzzed_text_raises_only_formula_errors(text):
    try:
        f = parse(text)
    except dl.FormulaError:
        return
    # anything accepted evaluates on a batch without raising (nan/inf are fine)
    out = f(torch.randn(4, f.dim))
    assert out.shape == (4,)


def test_a_long_flat_sum_is_not_nesting():
    # x1**2 + ... + x64**2 is a left-leaning tree of 64 additions to Python's parser: one
    # level of the formula, not 64 (it was refused as "too deeply nested")
    text = " + ".join(f"x{i}**2" for i in range(1, 65))
    f = parse(text)
    x = torch.arange(64, dtype=torch.float64).reshape(1, 64) / 10
    assert f.dim == 64 and torch.allclose(f(x), (x**2).sum(-1))
    assert float(parse("x - 2 - 3 + 4*y/2/2")(torch.tensor([[10.0, 3.0]]))[0]) == 8.0
    run = dl.descend(text, start=[1.0] * 64, lr=0.25, steps=3)
    assert np.allclose(run.x, 0.125)  # each coordinate halves per step


def test_a_number_too_large_for_a_float_is_a_clear_error():
    with pytest.raises(dl.FormulaError, match=r"number too large: .* at column 5 .*1e300"):
        parse("x + " + "9" * 400)
    with pytest.raises(dl.FormulaError, match="too deeply nested"):
        parse("sin(" * 70 + "x" + ")" * 70)  # real nesting is still limited
