"""C expressions for torch's element-wise operations, written the way torch computes them
(``x**2`` as ``x*x``, `torch.maximum` letting NaN win), with exact literals, so the C rounds as
torch does, operation by operation, up to its transcendental functions."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

CTYPE = {
    torch.float32: "float",
    torch.float64: "double",
    torch.bool: "int",
    torch.int8: "int",
    torch.int16: "int",
    torch.int32: "int",
    torch.int64: "long long",
}


def literal(value, dtype: torch.dtype) -> str:
    """A C literal of `value` in `dtype`, exact (hexadecimal floats)."""
    if dtype.is_floating_point:
        v = float(np.float32(value)) if dtype == torch.float32 else float(value)
        suffix = "f" if dtype == torch.float32 else ""
        if math.isnan(v):
            return f"(({CTYPE[dtype]})NAN)"
        if math.isinf(v):
            return f"(({CTYPE[dtype]})INFINITY)" if v > 0 else f"(-({CTYPE[dtype]})INFINITY)"
        text = v.hex() + suffix
        return f"({text})" if v < 0 or text.startswith("-") else text
    if dtype == torch.bool:
        return "1" if bool(value) else "0"
    return f"({int(value)}LL)" if dtype == torch.int64 else f"({int(value)})"


def math_fn(name: str, dtype: torch.dtype) -> str:
    return name + "f" if dtype == torch.float32 else name


# element-wise operations: aten name -> C expression of the operands a, b, c and the function
# namer F (sqrt -> sqrtf in float32); computed in the result's dtype, comparisons in their
# operands' common dtype
NAN_MAX = "(({a}) > ({b}) || ({a}) != ({a}) ? ({a}) : ({b}))"  # torch.maximum: NaN wins
NAN_MIN = "(({a}) < ({b}) || ({a}) != ({a}) ? ({a}) : ({b}))"
UNARY_FN = {
    name: name
    for name in (
        *("sqrt", "exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos"),
        *("atan", "asinh", "acosh", "atanh", "expm1", "log1p", "log2", "log10", "exp2", "erf"),
        *("erfc", "floor", "ceil", "trunc"),
    )
}
UNARY_FN.update(abs="fabs", round="nearbyint", arcsin="asin")
POINTWISE = {
    "add": "({a}) + ({b})",
    "sub": "({a}) - ({b})",
    "mul": "({a}) * ({b})",
    "div": "({a}) / ({b})",
    "neg": "-({a})",
    "reciprocal": "{one} / ({a})",
    "rsqrt": "{one} / {F}sqrt({a})",
    "sigmoid": "{one} / ({one} + {F}exp(-({a})))",
    "sign": "(({zero} < ({a})) - (({a}) < {zero}))",
    "sgn": "(({zero} < ({a})) - (({a}) < {zero}))",
    "relu": "(({a}) > {zero} || ({a}) != ({a}) ? ({a}) : {zero})",
    "maximum": NAN_MAX,
    "minimum": NAN_MIN,
    "fmax": "{F}fmax({a}, {b})",
    "fmin": "{F}fmin({a}, {b})",
    "atan2": "{F}atan2({a}, {b})",
    "hypot": "{F}hypot({a}, {b})",
    "fmod": "{F}fmod({a}, {b})",
    "copysign": "{F}copysign({a}, {b})",
    "where": "({a}) ? ({b}) : ({c})",
    "masked_fill": "({b}) ? ({c}) : ({a})",
    "gt": "({a}) > ({b})",
    "ge": "({a}) >= ({b})",
    "lt": "({a}) < ({b})",
    "le": "({a}) <= ({b})",
    "eq": "({a}) == ({b})",
    "ne": "({a}) != ({b})",
    "logical_and": "({a}) && ({b})",
    "logical_or": "({a}) || ({b})",
    "logical_xor": "(!({a})) != (!({b}))",
    "logical_not": "!({a})",
    "bitwise_not": "!({a})",
    "isnan": "({a}) != ({a})",
    "isinf": "({F}fabs({a}) == ({inf}))",
    "isfinite": "(({a}) - ({a}) == {zero})",
    "threshold_backward": "(({b}) <= ({c}) ? {zero} : ({a}))",
    "tanh_backward": "({a}) * ({one} - ({b}) * ({b}))",
    "sigmoid_backward": "({a}) * ({one} - ({b})) * ({b})",
}
POINTWISE.update({name: "{F}" + fn + "({a})" for name, fn in UNARY_FN.items()})


class Emitter:
    """Collects C statements, one new variable each."""

    def __init__(self, prefix: str):
        self.prefix, self.lines, self.count = prefix, [], 0

    def var(self, expr: str, ctype: str) -> str:
        name = f"{self.prefix}{self.count}"
        self.count += 1
        self.lines.append(f"{ctype} {name} = {expr};")
        return name


def extreme(items: list[str], dtype, var: Callable[[str], str], text: str = NAN_MAX) -> str:
    """torch.maximum (or minimum) across `items`, NaN winning; one variable a step (`var`), as
    nesting would repeat each operand three times a level."""
    fill = {"zero": literal(0, dtype), "one": literal(1, dtype)}
    acc = items[0]
    for e in items[1:]:
        acc = var(render(text, {"a": acc, "b": e}, fill, dtype))
    return acc


def vector_norm(items: list[str], order: float, dtype, var: Callable[[str], str]) -> str:
    """The max-, 1- or 2-norm of `items` (`descent.gradient_norm`)."""
    absf = math_fn("fabs", dtype)
    if order == math.inf:
        return extreme([var(f"{absf}({e})") for e in items], dtype, var)
    if order == 1:
        return " + ".join(f"{absf}({e})" for e in items)
    return f"{math_fn('sqrt', dtype)}(" + " + ".join(f"({e}) * ({e})" for e in items) + ")"


def render(text: str, names: dict, fill: dict, dtype) -> str:
    prefix = "f" if dtype == torch.float32 else ""
    out = text.replace("{F}", "\0")
    out = out.format(**names, **fill)
    # "{F}sqrt" -> "sqrtf": the suffix goes after the function's name
    while "\0" in out:
        i = out.index("\0")
        j = out.index("(", i)
        out = out[:i] + out[i + 1 : j] + prefix + out[j:]
    return out


def parse_literal(text: str) -> float:
    text = text.strip("()")
    for key, value in (("NAN", math.nan), ("INFINITY", math.inf)):
        if key in text:
            return -value if text.startswith("-") else value
    return float.fromhex(text.rstrip("f"))
