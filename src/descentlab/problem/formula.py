"""Formula strings such as ``"(x**2 + y - 11)**2 + (x + y**2 - 7)**2"`` turned into Objectives.

The text is parsed with Python's `ast` and every node is checked against an allow-list:
numbers, the variables ``x, y, z`` or ``x1 … xn``, the constants ``pi, e, tau``, the operators
``+ - * / **`` and calls of the torch functions listed in `FUNCTIONS`. Allowed nodes are compiled
into plain Python closures over torch operations. Nothing is ever passed to `eval`, `exec` or a
symbolic-algebra parser; anything else raises `FormulaError` naming the offending piece and its
column.

>>> f = parse("1.2*x**2 + 4")
>>> f.dim, f.variables
(1, ('x',))
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import FormulaError
from .objective import Objective

MAX_LENGTH = 1000
MAX_DEPTH = 64

FUNCTIONS: dict[str, tuple[Callable, int]] = {
    "sin": (torch.sin, 1),
    "cos": (torch.cos, 1),
    "tan": (torch.tan, 1),
    "exp": (torch.exp, 1),
    "expm1": (torch.expm1, 1),
    "log": (torch.log, 1),
    "log1p": (torch.log1p, 1),
    "log2": (torch.log2, 1),
    "log10": (torch.log10, 1),
    "sqrt": (torch.sqrt, 1),
    "abs": (torch.abs, 1),
    "sign": (torch.sign, 1),
    "tanh": (torch.tanh, 1),
    "sinh": (torch.sinh, 1),
    "cosh": (torch.cosh, 1),
    "arcsin": (torch.asin, 1),
    "arccos": (torch.acos, 1),
    "arctan": (torch.atan, 1),
    "asin": (torch.asin, 1),
    "acos": (torch.acos, 1),
    "atan": (torch.atan, 1),
    "arcsinh": (torch.asinh, 1),
    "arccosh": (torch.acosh, 1),
    "arctanh": (torch.atanh, 1),
    "asinh": (torch.asinh, 1),
    "acosh": (torch.acosh, 1),
    "atanh": (torch.atanh, 1),
    "sigmoid": (torch.sigmoid, 1),
    "softplus": (torch.nn.functional.softplus, 1),
    "relu": (torch.relu, 1),
    "arctan2": (torch.atan2, 2),
    "atan2": (torch.atan2, 2),
    "hypot": (torch.hypot, 2),
    "min": (torch.minimum, 2),
    "max": (torch.maximum, 2),
    "pow": (torch.pow, 2),
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
LETTERS = ("x", "y", "z")
_NUMBERED = re.compile(r"x([1-9][0-9]{0,3})$")

_BINARY: dict[type, Callable] = {
    ast.Add: torch.add,
    ast.Sub: torch.sub,
    ast.Mult: torch.mul,
    ast.Div: torch.div,
    ast.Pow: torch.pow,
}
# operators that chain at one level (a + b - c, a * b / c)
_FAMILY = {ast.Add: "sum", ast.Sub: "sum", ast.Mult: "product", ast.Div: "product"}
_UNARY: dict[type, Callable] = {ast.USub: torch.neg, ast.UAdd: lambda a: a}
_OPERATOR_HINTS = {
    ast.BitXor: "'^' is not a power here; write x**2 for x squared",
    ast.FloorDiv: "'//' is not allowed; use '/'",
    ast.Mod: "'%' is not allowed",
    ast.MatMult: "'@' is not allowed",
}

Env = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Formula:
    """A parsed formula: its text, variables in order, dimension, and the compiled function."""

    text: str
    variables: tuple[str, ...]
    dim: int
    evaluate: Callable[[Env], torch.Tensor]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate on a ``(..., dim)`` tensor of points."""
        env = {name: x[..., i] for i, name in enumerate(self.variables)}
        out = self.evaluate(env)
        return torch.broadcast_to(torch.as_tensor(out, dtype=x.dtype), x.shape[:-1])


class _Compiler:
    def __init__(self, text: str):
        self.text = text
        self.names: set[str] = set()

    def fail(self, node: ast.AST, what: str, fix: str = "") -> FormulaError:
        piece = ast.get_source_segment(self.text, node) or type(node).__name__
        if len(piece) > 40:
            piece = piece[:37] + "..."
        byte_col = getattr(node, "col_offset", 0)
        column = len(self.text.encode()[:byte_col].decode(errors="ignore")) + 1
        fix = f"; {fix}" if fix else ""
        return FormulaError(f"{what} {piece!r} at column {column} of {_short(self.text)!r}{fix}")

    def compile(self, node: ast.AST, depth: int = 0) -> Callable[[Env], torch.Tensor]:
        if depth > MAX_DEPTH:
            raise self.fail(node, "too deeply nested:", f"the limit is {MAX_DEPTH} levels")
        if isinstance(node, ast.Expression):
            return self.compile(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.UnaryOp):
            op = _UNARY.get(type(node.op))
            if op is None:
                raise self.fail(node, "operator not allowed in", "use - or +")
            operand = self.compile(node.operand, depth + 1)
            return lambda env: op(operand(env))
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.Attribute):
            raise self.fail(
                node, "attribute access is not allowed:", "call functions by name, e.g. sin(x)"
            )
        raise self.fail(
            node,
            f"{_describe(node)} is not allowed:",
            "use numbers, x, y, z, + - * / ** and functions",
        )

    def binary(self, node: ast.BinOp, depth: int) -> Callable[[Env], torch.Tensor]:
        """A chain of + and - (or of * and /) as one level: ``x1**2 + ... + x64**2`` is a
        long sum, not 64 levels of nesting (Python parses it as a left-leaning tree)."""
        family = _FAMILY.get(type(node.op))
        links = []  # the chain's operations, from the last back to the first
        while isinstance(node, ast.BinOp) and family and _FAMILY.get(type(node.op)) == family:
            links.append(node)
            node = node.left
        if not links:  # ** (or a forbidden operator): a level of its own
            links, node = [node], node.left
        for link in links:
            if type(link.op) not in _BINARY:
                hint = _OPERATOR_HINTS.get(type(link.op), "use + - * / **")
                raise self.fail(link, "operator not allowed in", hint)
        first = self.compile(node, depth + 1)
        rest = [(_BINARY[type(op.op)], self.compile(op.right, depth + 1)) for op in reversed(links)]

        def chain(env):
            out = first(env)
            for op, operand in rest:
                out = op(out, operand(env))
            return out

        return chain

    def constant(self, node: ast.Constant) -> Callable[[Env], torch.Tensor]:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(
                node, "not a real number:", "only real numbers are allowed as constants"
            )
        # A 0-d float64 tensor: torch arithmetic gives inf/nan where Python floats would raise,
        # and a 0-d tensor never changes the dtype of the batched variables it meets.
        try:
            number = float(value)
        except OverflowError:
            raise self.fail(
                node, "number too large:", "the largest is about 1.8e308 (write 1e300, say)"
            ) from None
        tensor = torch.tensor(number, dtype=torch.float64)
        return lambda env: tensor

    def name(self, node: ast.Name) -> Callable[[Env], torch.Tensor]:
        ident = node.id
        if ident in CONSTANTS:
            tensor = torch.tensor(CONSTANTS[ident], dtype=torch.float64)
            return lambda env: tensor
        if ident in LETTERS or _NUMBERED.match(ident):
            self.names.add(ident)
            return lambda env: env[ident]
        if ident in FUNCTIONS:
            raise self.fail(node, "function used without a call:", f"write {ident}(x)")
        close = difflib.get_close_matches(ident, [*LETTERS, *CONSTANTS], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "variables are x, y, z or x1..xn"
        raise self.fail(node, "unknown name", f"{hint} (constants: pi, e, tau)")

    def call(self, node: ast.Call, depth: int) -> Callable[[Env], torch.Tensor]:
        if not isinstance(node.func, ast.Name):
            raise self.fail(
                node.func, "only plain function names can be called, not", "e.g. sin(x)"
            )
        fname = node.func.id
        if fname not in FUNCTIONS:
            close = difflib.get_close_matches(fname, FUNCTIONS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(FUNCTIONS)}"
            raise self.fail(node.func, "unknown function", hint)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(
                node, "keyword or starred arguments in", "pass plain positional arguments"
            )
        fn, arity = FUNCTIONS[fname]
        if len(node.args) != arity:
            raise self.fail(node, "wrong number of arguments in", f"{fname} takes {arity}")
        args = [self.compile(a, depth + 1) for a in node.args]
        if arity == 1:
            (arg,) = args
            return lambda env: fn(arg(env))
        return lambda env: fn(*(a(env) for a in args))


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Lambda: "a lambda",
        ast.Compare: "a comparison",
        ast.BoolOp: "'and'/'or'",
        ast.IfExp: "an if-expression",
        ast.Subscript: "indexing",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.NamedExpr: "an assignment",
        ast.Starred: "unpacking",
    }
    return kinds.get(type(node), f"{type(node).__name__} syntax")


def _variables(names: set[str], text: str) -> tuple[str, ...]:
    letters = names & set(LETTERS)
    numbered = names - letters
    if letters and numbered:
        raise FormulaError(
            f"use either x, y, z or x1..xn, not both, in {_short(text)!r} (found "
            f"{', '.join(sorted(names))})"
        )
    if numbered:
        dim = max(int(n[1:]) for n in numbered)
        return tuple(f"x{i}" for i in range(1, dim + 1))
    dim = max(LETTERS.index(n) for n in letters) + 1
    return LETTERS[:dim]


def parse(text: str) -> Formula:
    """Parse a formula string into a `Formula`; raise `FormulaError` on anything not allowed.

    >>> parse("sin(x) * cos(y)").dim
    2
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise FormulaError("the formula is empty; write an expression such as 'x**2 + y**2'")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        hint = (
            " (write multiplication explicitly, e.g. 2*x)" if re.search(r"\d[a-z(]", text) else ""
        )
        reason = f" ({exc.msg})" if "nested" in str(exc.msg) else ""
        raise FormulaError(f"invalid syntax{where}{reason} in {_short(text)!r}{hint}") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise FormulaError(f"cannot parse formula: {type(exc).__name__}") from None
    compiler = _Compiler(text.strip())
    try:
        evaluate = compiler.compile(tree)
    except RecursionError:
        raise FormulaError(f"formula nested deeper than {MAX_DEPTH} levels") from None
    if not compiler.names:
        raise FormulaError(
            f"formula {_short(text)!r} has no variable; use x (and y, z or x1..xn) in it"
        )
    variables = _variables(compiler.names, text)
    return Formula(text=text.strip(), variables=variables, dim=len(variables), evaluate=evaluate)


def looks_like_formula(text: str) -> bool:
    """True when `text` is more than a bare name: it has an operator, a call or a number."""
    stripped = text.strip()
    return (
        not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", stripped)
        or stripped in LETTERS
        or bool(_NUMBERED.match(stripped))
    )


def formula_objective(text: str) -> Objective:
    """An Objective for a formula string; its name and formula are the text itself."""
    f = parse(text)
    return Objective(fn=f, dim=f.dim, name=f.text, formula=f.text)
