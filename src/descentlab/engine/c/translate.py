"""Step 2 of the C backend: a traced tape (`trace`) as C statements over one point's
coordinates.

Each traced tensor becomes a numpy array of C expressions, one per element, with the points
axis (the dimension of size `TRACE_N`) collapsed to 1 (`_Translator`). Views, stacking, slicing
and broadcasting are numpy's own operations on those arrays; element-wise operations emit one C
statement per element (`expressions`); a reduction, scan, softmax or matrix product over
coordinates emits a chain. Whatever does not depend on the points (``ones_like``, ``arange``, a
constant) is taken from the traced result, as it was at that point of the trace, as an exact
literal. An operation the translator does not know, one that mixes points (a reduction over the
points axis that is used), an in-place write into a view, or data-dependent control flow
(``.item()``, ``nonzero``) raises `Unsupported`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .expressions import (
    CTYPE,
    NAN_MAX,
    NAN_MIN,
    POINTWISE,
    Emitter,
    extreme,
    literal,
    math_fn,
    parse_literal,
    render,
    vector_norm,
)
from .trace import TRACE_N, Unsupported, _Tape, value_and_grad_traced


class _Unusable:
    """A result the C loop cannot hold (a reduction over the points, say): fine while unused."""

    def __init__(self, why: str):
        self.why = why


class _Sym:
    """A traced tensor as C expressions: `arr` has the tensor's shape with the points axis
    collapsed to 1."""

    __slots__ = ("arr", "dtype")

    def __init__(self, arr: np.ndarray, dtype: torch.dtype):
        self.arr, self.dtype = arr, dtype


_COMPARE = {"gt", "ge", "lt", "le", "eq", "ne"}
# operations along one axis that keep its length (`_Translator.along`)
_ALONG = ("_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data")
# operations that only look at their input differently: numpy does the same to the arrays
_IDENTITY = {"detach", "alias", "lift_fresh", "clone", "contiguous", "lift_fresh_copy"}


class _Translator:
    """Walks a tape and gives each tensor's C expressions (`value`)."""

    def __init__(self, emit: Emitter, inputs: dict[int, _Sym]):
        self.emit = emit
        self.env: dict[int, object] = dict(inputs)
        self.values: dict[int, torch.Tensor] = {}  # what each tensor held at this point

    # -- values

    def known(self, t) -> bool:
        return isinstance(t, torch.Tensor) and id(t) in self.env

    def value(self, t):
        """A tensor's _Sym (a constant one if it does not depend on the points)."""
        if not isinstance(t, torch.Tensor):
            return t
        got = self.env.get(id(t))
        if isinstance(got, _Unusable):
            raise Unsupported(got.why)
        if got is None:
            return self.constant(t)
        return got

    def constant(self, t: torch.Tensor) -> _Sym:
        values = self.values.get(id(t), t).detach().cpu()
        axes = [i for i, size in enumerate(values.shape) if size == TRACE_N]
        for axis in axes:  # the same for every point: keep one
            first = values.narrow(axis, 0, 1)
            same = torch.isclose(values, first.expand_as(values), rtol=0, atol=0, equal_nan=True)
            if not bool(same.all()):
                raise Unsupported("a constant that differs from point to point")
            values = first
        flat = values.reshape(-1).tolist()
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [literal(v, t.dtype) for v in flat]
        return _Sym(arr.reshape(tuple(values.shape)), t.dtype)

    @staticmethod
    def shape_of(t: torch.Tensor) -> tuple[int, ...]:
        return tuple(1 if s == TRACE_N else s for s in t.shape)

    def bind(self, out, value) -> None:
        if isinstance(out, torch.Tensor):
            if isinstance(value, _Sym) and value.arr.shape != self.shape_of(out):
                raise Unsupported(f"a result of shape {tuple(out.shape)} could not be followed")
            self.env[id(out)] = value
        elif isinstance(out, (tuple, list)):
            for o, v in zip(out, value, strict=True):
                self.bind(o, v)

    # -- the walk

    def run(self, calls) -> None:
        try:
            self._run(calls)
        except Unsupported:
            raise
        except Exception as exc:  # an operation used in a way this translator did not foresee
            raise Unsupported(f"translating to C failed ({type(exc).__name__}: {exc})") from None

    def _run(self, calls) -> None:
        for func, args, kwargs, out, now in calls:
            if now is not None:
                self.values[id(out)] = now
            tensors = [a for a in _flat(args) + _flat(list(kwargs.values())) if _is_t(a)]
            if not any(self.known(a) for a in tensors):
                continue  # nothing traced flows in: a constant, read from `out` when used
            name = func._schema.name.split("::")[-1]
            mutates = func._schema.is_mutable
            if mutates:
                if "out" in kwargs or not name.endswith("_"):
                    raise Unsupported(f"{name} writes into its arguments")
                target = args[0]
                if target._base is not None:
                    raise Unsupported(f"{name} writes into a view")
                name = name[:-1]
            result = self.op(name, func, args, kwargs, out)
            self.bind(out, result)
            if mutates:
                self.env[id(args[0])] = result

    def op(self, name, func, args, kwargs, out):
        if name in _IDENTITY:
            return self.value(args[0])
        if name in (
            "zeros_like",
            "ones_like",
            "full_like",
            "empty_like",
            "new_zeros",
            "new_ones",
            "new_full",
            "new_empty",
            "fill",
            "zeros",
            "ones",
        ):
            return self.constant(out) if name != "empty_like" else _Unusable("empty_like")
        if name == "_to_copy":
            src = self.value(args[0])
            return self.cast(src, out.dtype)
        if name in POINTWISE or name in (
            "pow",
            "rsub",
            "clamp",
            "clamp_min",
            "clamp_max",
            "softplus",
            "softplus_backward",
            "copy",
            "addcmul",
            "addcdiv",
            "lerp",
        ):
            return self.pointwise(name, func, args, kwargs, out)
        if name in ("sum", "mean", "amax", "amin", "prod", "linalg_vector_norm", "logsumexp"):
            return self.reduce(name, args, kwargs, out)
        if name in _ALONG:
            return self.along(name, args, out)
        if name in ("mm", "bmm"):
            return self.matmul(args, out)
        if name in ("cumsum", "cumprod"):
            return self.scan(name, args, out)
        return self.view(name, args, kwargs, out)

    # -- element-wise

    def cast(self, src: _Sym, dtype: torch.dtype) -> _Sym:
        if src.dtype == dtype:
            return src
        ctype = CTYPE.get(dtype)
        if ctype is None:
            raise Unsupported(f"dtype {dtype}")
        arr = np.vectorize(lambda e: self.emit.var(f"({ctype})({e})", ctype), otypes=[object])(
            src.arr
        )
        return _Sym(arr, dtype)

    def pointwise(self, name, func, args, kwargs, out):
        if not isinstance(out, torch.Tensor) or CTYPE.get(out.dtype) is None:
            raise Unsupported(f"{name} giving {getattr(out, 'dtype', type(out))}")
        tensors = [a for a in args if _is_t(a)]
        compute = out.dtype
        if name in _COMPARE or name in ("isnan", "isinf", "isfinite", "logical_not"):
            compute = torch.result_type(*args[:2]) if len(args) > 1 else tensors[0].dtype
        operands = []
        for a in args:
            if _is_t(a):
                s = self.value(a)
                if s.dtype != compute and compute.is_floating_point:
                    s = self.cast(s, compute)
                operands.append(s)
            elif isinstance(a, (int, float, bool)):
                operands.append(literal(a, compute))
            elif a is None:
                operands.append(None)
            else:
                raise Unsupported(f"{name} with argument {a!r}")
        template = self.template(name, operands, kwargs, compute)
        syms = [o for o in operands if isinstance(o, _Sym)]
        arrs = np.broadcast_arrays(*[s.arr for s in syms])
        ctype = CTYPE[out.dtype]
        result = np.empty(arrs[0].shape, dtype=object)
        # autograd adds a literal zero wherever a gradient was scattered into one coordinate
        # (select_backward): x + 0 is x but for -0, which it turns into +0; left out (2 of the
        # ~40 operations of a Himmelblau step), a gradient of -0 can at most leave a position
        # at -0 where torch's would be +0
        zero = literal(0, compute) if name == "add" and "alpha" not in kwargs else None
        for idx in np.ndindex(arrs[0].shape):
            it = iter(arrs)
            items = [next(it)[idx] if isinstance(o, _Sym) else o for o in operands]
            if zero is not None and zero in items[:2] and compute == out.dtype:
                result[idx] = items[1] if items[0] == zero else items[0]
                continue
            expr = template(items)
            if compute != out.dtype:
                expr = f"({ctype})({expr})"
            result[idx] = self.emit.var(expr, ctype)
        return _Sym(result, out.dtype)

    def template(self, name, operands, kwargs, dtype) -> Callable[[list], str]:
        """The C expression of one element, given its operands' expressions."""
        zero, one = literal(0, dtype), literal(1, dtype)
        inf = literal(math.inf, dtype) if dtype.is_floating_point else None  # ints have none
        fill = {"zero": zero, "one": one, "inf": inf}
        if name == "pow":
            return self.power(operands, dtype)
        # torch's CPU kernels fuse a multiply into the add that follows (its vector fmadd, or
        # the compiler contracting one; `FMA` in the C header, one rounding where the CPU has
        # fma): add and sub with alpha compute a + alpha b, rsub b - alpha a, addcmul
        # self + (value t1) t2, lerp self + w (end - self) for |w| < 0.5, else
        # end + (w - 1)(end - self); addcdiv self + (value t1) / t2 has nothing to fuse.
        # Integers are not fused (fma would convert them to floating point)
        fma = "FMA" if dtype.is_floating_point else "PLAIN_MULADD"
        if name in ("add", "sub") and "alpha" in kwargs:
            alpha = literal(kwargs["alpha"] * (1 if name == "add" else -1), dtype)
            return lambda it: f"{fma}({it[1]}, {alpha}, {it[0]})"
        if name == "rsub":
            alpha = literal(-kwargs.get("alpha", 1), dtype)
            return lambda it: f"{fma}({it[0]}, {alpha}, {it[1]})"
        if name in ("addcmul", "addcdiv"):
            value = kwargs.get("value", 1)
            scale = "" if value == 1 else f"{literal(value, dtype)} * "
            if name == "addcmul":
                return lambda it: f"{fma}({scale}({it[1]}), {it[2]}, {it[0]})"
            return lambda it: f"({it[0]}) + ({scale}({it[1]})) / ({it[2]})"
        if name == "lerp":
            fabs, half = math_fn("fabs", dtype), literal(0.5, dtype)

            def lerp(it):
                start, end, w = it
                step = f"({end}) - ({start})"
                return (
                    f"({fabs}({w}) < {half} ? {fma}({w}, {step}, {start})"
                    f" : {fma}(({w}) - {one}, {step}, {end}))"
                )

            return lerp
        if name in ("clamp", "clamp_min", "clamp_max"):
            lo = operands[1] if name != "clamp_max" else None
            hi = (
                operands[2]
                if name == "clamp" and len(operands) > 2
                else (operands[1] if name == "clamp_max" else None)
            )

            def clamp(it):
                expr = it[0]
                if lo is not None:
                    expr = render(NAN_MAX, {"a": expr, "b": it[1]}, fill, dtype)
                if hi is not None:
                    expr = render(NAN_MIN, {"a": expr, "b": it[-1]}, fill, dtype)
                return expr

            return clamp
        if name in ("softplus", "softplus_backward"):  # beta 1 and threshold 20 by default
            at = 1 if name == "softplus" else 2
            operands = operands + [literal(1, dtype), literal(20, dtype)][len(operands) - at :]
        if name == "softplus":
            beta, threshold = operands[1], operands[2]
            return lambda it: (
                f"(({it[0]}) * {beta} > {threshold} ? ({it[0]}) : "
                f"{math_fn('log1p', dtype)}({math_fn('exp', dtype)}(({it[0]}) * {beta})) / {beta})"
            )
        if name == "softplus_backward":
            beta, threshold = operands[2], operands[3]

            def softplus_backward(it):
                z = f"{math_fn('exp', dtype)}(({it[1]}) * {beta})"
                return (
                    f"(({it[1]}) * {beta} > {threshold} ? ({it[0]}) : "
                    f"({it[0]}) * {z} / ({z} + {one}))"
                )

            return softplus_backward
        if name == "copy":
            return lambda it: it[1]
        text = POINTWISE[name]
        return lambda it: render(text, dict(zip("abc", it, strict=False)), fill, dtype)

    def power(self, operands, dtype):
        base, exponent = operands[0], operands[1]
        if isinstance(base, _Sym) and isinstance(exponent, str):  # pow(tensor, scalar)
            e = (
                float(np.float32(parse_literal(exponent)))
                if dtype == torch.float32
                else parse_literal(exponent)
            )
            one = literal(1, dtype)
            # torch's special cases (aten/native/Pow.cpp, cpu/PowKernel.cpp), so as to round alike
            special = {
                0.0: lambda a: one,
                1.0: lambda a: a,
                2.0: lambda a: f"({a}) * ({a})",
                3.0: lambda a: f"({a}) * ({a}) * ({a})",
                0.5: lambda a: f"{math_fn('sqrt', dtype)}({a})",
                -0.5: lambda a: f"{one} / {math_fn('sqrt', dtype)}({a})",
                -1.0: lambda a: f"{one} / ({a})",
                -2.0: lambda a: f"{one} / (({a}) * ({a}))",
            }
            if e in special:
                return lambda it: special[e](it[0])
        return lambda it: f"{math_fn('pow', dtype)}({it[0]}, {it[1]})"

    # -- reductions over coordinates

    def reduce(self, name, args, kwargs, out):
        src = self.value(args[0])
        if name == "linalg_vector_norm":  # (its order is read in `combine`)
            dims = args[2] if len(args) > 2 else kwargs.get("dim")
            keep = args[3] if len(args) > 3 else kwargs.get("keepdim", False)
        else:
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        ndim = src.arr.ndim
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            dims = list(range(ndim))
        elif isinstance(dims, int):
            dims = [dims]
        dims = sorted(d % ndim if ndim else 0 for d in dims)
        real = args[0].shape
        if any(real[d] == TRACE_N for d in dims):
            return _Unusable(f"{name} over the points couples them")
        dtype = out.dtype
        if not dtype.is_floating_point and not (name == "sum" and dtype in CTYPE):
            raise Unsupported(f"{name} giving {dtype}")  # (amax's gradient counts ties: sum)
        src = self.cast(src, dtype)
        ctype = CTYPE[dtype]
        arr = np.moveaxis(src.arr, dims, list(range(ndim - len(dims), ndim)))
        lead = arr.shape[: ndim - len(dims)]
        arr = arr.reshape(*lead, -1)
        result = np.empty(lead, dtype=object)
        for idx in np.ndindex(lead):
            items = list(arr[idx])
            result[idx] = self.emit.var(self.combine(name, items, dtype, args), ctype)
        if keep:
            for d in dims:
                result = np.expand_dims(result, d)
        return _Sym(result, dtype)

    def combine(self, name, items, dtype, args) -> str:
        ctype = CTYPE[dtype]
        var = lambda expr: self.emit.var(expr, ctype)  # noqa: E731
        if not items:
            return literal(1 if name == "prod" else 0, dtype)
        if name in ("sum", "mean", "prod"):
            op = " * " if name == "prod" else " + "
            expr = items[0]
            for e in items[1:]:
                expr = f"({expr}){op}({e})"
            if name == "mean":
                expr = f"({expr}) / {literal(len(items), dtype)}"
            return expr
        if name in ("amax", "amin"):
            return extreme(items, dtype, var, NAN_MAX if name == "amax" else NAN_MIN)
        if name == "logsumexp":  # as torch: an infinite maximum shifts by 0
            top = extreme(items, dtype, var)
            inf = literal(math.inf, dtype)
            shift = var(f"{math_fn('fabs', dtype)}({top}) == {inf} ? {literal(0, dtype)} : {top}")
            terms = " + ".join(f"{math_fn('exp', dtype)}(({e}) - ({shift}))" for e in items)
            return f"{math_fn('log', dtype)}({terms}) + ({shift})"
        order = float(args[1]) if len(args) > 1 else 2.0
        if order in (math.inf, 1, 2):
            return vector_norm(items, order, dtype, var)
        raise Unsupported(f"vector norm of order {order}")

    def along(self, name, args, out):
        """softmax and log-softmax, and their gradients, along one coordinate axis."""
        dtype, dim = out.dtype, args[2 if "backward" in name else 1]
        if not dtype.is_floating_point:
            raise Unsupported(f"{name} giving {dtype}")
        syms = [self.cast(self.value(a), dtype) for a in args[: 2 if "backward" in name else 1]]
        if args[0].shape[dim] == TRACE_N:
            return _Unusable(f"{name} across the points couples them")
        arrs = [np.moveaxis(np.broadcast_to(sy.arr, syms[0].arr.shape), dim, -1) for sy in syms]
        result = np.empty(arrs[0].shape, dtype=object)
        ctype = CTYPE[dtype]
        var = lambda expr: self.emit.var(expr, ctype)  # noqa: E731
        exp, log = math_fn("exp", dtype), math_fn("log", dtype)
        for idx in np.ndindex(arrs[0].shape[:-1]):
            a = list(arrs[0][idx])
            b = list(arrs[1][idx]) if len(arrs) > 1 else []
            if name in ("_softmax", "_log_softmax"):
                top = extreme(a, dtype, var)
                shifted = [var(f"({e}) - ({top})") for e in a]
                if name == "_softmax":
                    ex = [var(f"{exp}({e})") for e in shifted]
                    total = var(" + ".join(ex))
                    new = [f"({e}) / ({total})" for e in ex]
                else:
                    total = var(f"{log}(" + " + ".join(f"{exp}({e})" for e in shifted) + ")")
                    new = [f"({e}) - ({total})" for e in shifted]
            elif name == "_softmax_backward_data":  # (gradient, softmax)
                total = var(" + ".join(f"({g}) * ({y})" for g, y in zip(a, b, strict=True)))
                new = [f"({y}) * (({g}) - ({total}))" for g, y in zip(a, b, strict=True)]
            else:  # _log_softmax_backward_data: (gradient, log-softmax)
                total = var(" + ".join(f"({g})" for g in a))
                new = [f"({g}) - {exp}({y}) * ({total})" for g, y in zip(a, b, strict=True)]
            for j, expr in enumerate(new):
                result[(*idx, j)] = var(expr)
        return _Sym(np.moveaxis(result, -1, dim), dtype)

    def matmul(self, args, out):
        """mm and bmm (what matmul and einsum become): sums of products over a coordinate
        axis; over the points axis they would couple the points."""
        dtype = out.dtype
        if not dtype.is_floating_point:
            raise Unsupported(f"a matrix product giving {dtype}")
        if args[0].shape[-1] == TRACE_N:
            return _Unusable("a matrix product over the points couples them")
        a, b = (self.cast(self.value(t), dtype).arr for t in args[:2])
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a = np.broadcast_to(a, (*lead, *a.shape[-2:]))
        b = np.broadcast_to(b, (*lead, *b.shape[-2:]))
        result = np.empty((*lead, a.shape[-2], b.shape[-1]), dtype=object)
        for idx in np.ndindex(result.shape):
            *head, i, j = idx
            row, col = a[(*head, i)], b[(*head, slice(None), j)]
            terms = " + ".join(f"({x}) * ({y})" for x, y in zip(row, col, strict=True))
            result[idx] = self.emit.var(terms, CTYPE[dtype])
        return _Sym(result, dtype)

    def scan(self, name, args, out):
        """cumsum or cumprod along a coordinate axis (Griewank's product has one in its
        gradient)."""
        src = self.value(args[0])
        dim = args[1] % max(src.arr.ndim, 1)
        if args[0].shape[dim] == TRACE_N:
            return _Unusable(f"{name} over the points couples them")
        src = self.cast(src, out.dtype)
        op = " + " if name == "cumsum" else " * "
        arr = np.moveaxis(src.arr, dim, -1).copy()
        for idx in np.ndindex(arr.shape[:-1]):
            for j in range(1, arr.shape[-1]):
                arr[(*idx, j)] = self.emit.var(
                    f"({arr[(*idx, j - 1)]}){op}({arr[(*idx, j)]})", CTYPE[out.dtype]
                )
        return _Sym(np.moveaxis(arr, -1, dim), out.dtype)

    # -- views and shapes

    def view(self, name, args, kwargs, out):
        if name in ("stack", "cat"):
            syms = [self.value(t) for t in args[0]]
            dtype = out.dtype
            syms = [self.cast(s, dtype) for s in syms]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if name == "cat" and args[0][0].shape[dim] == TRACE_N:
                return _Unusable("cat along the points")
            arrs = [s.arr for s in syms]
            if name == "cat":
                return _Sym(np.concatenate(arrs, axis=dim), dtype)
            return _Sym(np.stack(arrs, axis=dim), dtype)
        src = self.value(args[0])
        arr, real = src.arr, args[0].shape
        if name in ("view", "_unsafe_view", "reshape"):
            shape = [1 if s == TRACE_N else s for s in args[1]]
            return _Sym(arr.reshape(shape), src.dtype)
        if name == "expand":
            shape = [1 if s == TRACE_N else s for s in args[1]]
            lead = len(shape) - arr.ndim
            shape = [arr.shape[i - lead] if s == -1 else s for i, s in enumerate(shape)]
            return _Sym(np.broadcast_to(arr, shape), src.dtype)
        if name == "select":
            dim, index = args[1] % arr.ndim, args[2]
            if real[dim] == TRACE_N:
                return _Unusable("a single point selected")
            return _Sym(np.take(arr, index, axis=dim), src.dtype)
        if name in ("slice", "narrow"):
            dim = args[1] % arr.ndim if len(args) > 1 else 0
            if name == "narrow":
                start, end, step = args[2], args[2] + args[3], 1
            else:
                start = args[2] if len(args) > 2 and args[2] is not None else 0
                end = args[3] if len(args) > 3 and args[3] is not None else real[dim]
                step = args[4] if len(args) > 4 else 1
            if real[dim] == TRACE_N:
                if slice(start, end, step).indices(TRACE_N) != (0, TRACE_N, 1):
                    return _Unusable("some points sliced")
                return src
            index = [slice(None)] * arr.ndim
            index[dim] = slice(start, min(end, real[dim]), step)
            return _Sym(arr[tuple(index)], src.dtype)
        if name == "flip":
            dims = [d % arr.ndim for d in args[1]]
            if any(real[d] == TRACE_N for d in dims):
                return _Unusable("the points reversed")
            return _Sym(np.flip(arr, dims), src.dtype)
        if name == "unsqueeze":
            return _Sym(np.expand_dims(arr, args[1] % (arr.ndim + 1)), src.dtype)
        if name == "squeeze":
            dims = args[1] if len(args) > 1 else [i for i, s in enumerate(real) if s == 1]
            dims = [dims] if isinstance(dims, int) else list(dims)
            dims = tuple(d % arr.ndim for d in dims if real[d % arr.ndim] == 1) if arr.ndim else ()
            return _Sym(np.squeeze(arr, axis=dims), src.dtype)
        if name == "permute":
            return _Sym(np.transpose(arr, [d % arr.ndim for d in args[1]]), src.dtype)
        if name in ("transpose", "t"):
            if name == "t" and arr.ndim < 2:
                return src
            a, b = (args[1], args[2]) if name == "transpose" else (0, 1)
            return _Sym(np.swapaxes(arr, a, b), src.dtype)
        if name in ("unbind", "split", "split_with_sizes"):
            dim = (
                (args[1] if len(args) > 1 else 0)
                if name == "unbind"
                else (args[2] if len(args) > 2 else 0)
            )
            dim %= arr.ndim
            if real[dim] == TRACE_N:
                return _Unusable("points split apart")
            if name == "unbind":
                return [_Sym(np.take(arr, i, axis=dim), src.dtype) for i in range(arr.shape[dim])]
            sizes = args[1]
            if isinstance(sizes, int):
                sizes = [sizes] * -(-arr.shape[dim] // sizes)
            cuts = np.cumsum(sizes)[:-1]
            return [_Sym(a, src.dtype) for a in np.split(arr, cuts, axis=dim)]
        if name in ("select_backward", "slice_backward"):
            sizes = [1 if s == TRACE_N else s for s in args[1]]
            dim = args[2] % len(sizes)
            if args[1][dim] == TRACE_N:
                return _Unusable("a gradient for some points only")
            base = np.full(sizes, literal(0, src.dtype), dtype=object)
            index = [slice(None)] * len(sizes)
            if name == "select_backward":
                index[dim] = args[3]
            else:
                index[dim] = slice(args[3], min(args[4], sizes[dim]), args[5])
            base[tuple(index)] = arr
            return _Sym(base, src.dtype)
        raise Unsupported(f"operation {name} is not translated to C")


def _is_t(a) -> bool:
    return isinstance(a, torch.Tensor)


def _flat(items) -> list:
    out = []
    for a in items:
        if isinstance(a, (list, tuple)):
            out += _flat(a)
        else:
            out.append(a)
    return out


# ---------------------------------------------------------------------------------------------
# 3. what the C loop asks for


def objective_code(fn: Callable, d: int, dtype: torch.dtype) -> tuple[list[str], str, list[str]]:
    """C statements computing f and its gradient from ``x0 ... x{d-1}``: (lines, value, grads)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(TRACE_N, d, generator=gen, dtype=torch.float64) + 0.25).to(dtype)
    try:
        tape, _, v, g = value_and_grad_traced(fn, x)
    except Unsupported:
        raise
    except Exception as exc:  # f failed on the trace's points: the eager engine will say why
        raise Unsupported(f"tracing f failed ({type(exc).__name__}: {exc})") from None
    names = np.array([[f"x{c}" for c in range(d)]], dtype=object)
    emit = Emitter("f")
    tr = _Translator(emit, {id(x): _Sym(names, dtype)})
    tr.run(tape.calls)
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != (TRACE_N,):
        raise Unsupported("f does not give one value per point")
    value = tr.cast(tr.value(v), dtype).arr.reshape(-1)
    grads = tr.cast(tr.value(g), dtype).arr
    if value.shape != (1,) or grads.shape != (1, d):
        raise Unsupported("f's value or gradient could not be followed per point")
    return emit.lines, value[0], list(grads[0])


def update_code(kind: str, nesterov: bool, dtype: torch.dtype, c: int, state_size: int):
    """C statements of torch.optim's update (`updates.update_rule`) of coordinate `c`: from
    ``px{c}``, ``pg{c}`` and ``ps{i}_{c}`` to (lines, new position, new state)."""
    from ..updates import HYPER, update_rule

    gen = torch.Generator().manual_seed(1)

    def sample():
        return (torch.rand(TRACE_N, generator=gen, dtype=torch.float64) + 0.25).to(dtype)

    x, g = sample(), sample()
    state = tuple(sample() for _ in range(state_size))
    h = {key: torch.tensor(0.5, dtype=dtype) for key in HYPER}
    tape = _Tape()
    with tape:
        new, new_state = update_rule(kind, nesterov)(x, g, state, h)

    def point(name: str) -> _Sym:  # one coordinate of one point: shape (1,)
        return _Sym(np.array([name], dtype=object), dtype)

    inputs = {id(x): point(f"px{c}"), id(g): point(f"pg{c}")}
    for i, s in enumerate(state):
        inputs[id(s)] = point(f"ps{i}_{c}")
    for key, t in h.items():
        inputs[id(t)] = _Sym(np.array(f"h_{key}", dtype=object), dtype)
    emit = Emitter(f"u{c}_")
    tr = _Translator(emit, inputs)
    tr.run(tape.calls)
    moved = tr.cast(tr.value(new), dtype).arr.reshape(-1)[0]
    kept = [tr.cast(tr.value(s), dtype).arr.reshape(-1)[0] for s in new_state]
    return emit.lines, moved, kept
