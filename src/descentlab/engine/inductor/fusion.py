"""A graph pass that lets inductor fuse several descent steps into one loop over the points.

The compiled engine holds the coordinates as rows of a ``(d, N)`` tensor, and the objective
sees them as ``(N, d)`` columns. In a call that runs several steps, step i+1's input is the
``torch.stack`` of step i's new rows, and its gradient comes back from autograd as a sum of
``select_scatter``s into zeros (one per coordinate the objective read). Inductor cannot see
through either: it writes the stacked tensor and the ``(N, d)`` gradient to memory between the
steps, splitting the call into several loops (Adam's 4-step call became five). This pass hands
every read of a stacked coordinate the row it was stacked from, and every read of a gradient
coordinate the expression that was scattered into it, so one loop reads x once, runs the K
steps in registers, and writes each row once (benchmarks/unroll.py measures it).

It only rewrites what it recognises and leaves the rest of the graph alone: an objective that
reads its coordinates some other way (slices, reductions over d) is compiled as before.

Every torch internal the inductor backend uses is here: inductor's `CustomGraphPass` hook
(``post_grad_custom_pre_pass``) and dynamo's recompile limit (`raise_recompile_limit`).
"""

from __future__ import annotations

import operator

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

aten = torch.ops.aten


def _val(node):
    return getattr(node, "meta", {}).get("val")


def _is_2d(node) -> bool:
    val = _val(node)
    return val is not None and val.dim() == 2


def _index(node, dim: int, index: int) -> int:
    return index % _val(node).shape[dim] if index < 0 else index


def _rows(node, known: dict):
    """``({coordinate: row node}, axis)`` when `node` is a 2-D tensor whose slices along `axis`
    are known nodes: a ``cat`` of 1-D rows (torch.stack's lowering, viewed as ``(d, N)``), a sum
    of ``select_scatter``s into zeros (autograd's gradient of coordinate reads), or a transpose
    of either; else None."""
    if node in known:
        return known[node]
    found = None
    target, args = getattr(node, "target", None), getattr(node, "args", ())
    if target in (aten.reshape.default, aten.view.default) and args and _is_2d(node):
        source = args[0]
        if getattr(source, "target", None) is aten.cat.default:
            parts = source.args[0]
            dim = source.args[1] if len(source.args) > 1 else 0
            vals = [_val(p) for p in parts]
            if (
                dim == 0
                and all(v is not None and v.dim() == 1 for v in vals)
                and len({str(v.shape[0]) for v in vals}) == 1
                and str(_val(node).shape[0]) == str(len(parts))
            ):
                found = (dict(enumerate(parts)), 0)
    elif target is aten.full.default and args[1] == 0 and _is_2d(node):
        found = ({}, None)
    elif target is aten.select_scatter.default and _is_2d(node):
        base = _rows(args[0], known)
        dim = args[2] % 2
        if base is not None and base[1] in (None, dim) and _val(args[1]) is not None:
            found = ({**base[0], _index(node, dim, args[3]): args[1]}, dim)
    elif target is aten.add.Tensor and len(args) == 2 and not node.kwargs and _is_2d(node):
        left, right = (_rows(a, known) if hasattr(a, "target") else None for a in args)
        if left is not None and right is not None and not set(left[0]) & set(right[0]):
            axes = {left[1], right[1]} - {None}
            if len(axes) <= 1 and str(_val(args[0]).shape) == str(_val(args[1]).shape):
                found = ({**left[0], **right[0]}, axes.pop() if axes else None)
    elif target is aten.permute.default and list(args[1]) == [1, 0]:
        inner = _rows(args[0], known)
        if inner is not None and inner[1] is not None:
            found = (inner[0], 1 - inner[1])
    known[node] = found
    return found


def split_rows(graph: torch.fx.Graph) -> None:
    """Replace ``select(t, axis, j)`` and ``unbind(t, axis)[j]`` by row j of `t` where `_rows`
    knows it (a coordinate that was never scattered into is left to inductor)."""
    known: dict = {}
    for node in list(graph.nodes):
        if node.target is aten.select.int and hasattr(node.args[0], "target"):
            rows = _rows(node.args[0], known)
            if rows is not None and rows[1] == node.args[1] % 2:
                row = rows[0].get(_index(node.args[0], rows[1], node.args[2]))
                if row is not None and str(_val(row).shape) == str(_val(node).shape):
                    node.replace_all_uses_with(row)
        elif node.target is aten.unbind.int and hasattr(node.args[0], "target"):
            rows = _rows(node.args[0], known)
            dim = (node.args[1] if len(node.args) > 1 else 0) % 2
            users = list(node.users)
            if (
                rows is not None
                and rows[1] == dim
                and all(u.target is operator.getitem and u.args[1] in rows[0] for u in users)
                and all(str(_val(rows[0][u.args[1]]).shape) == str(_val(u).shape) for u in users)
            ):
                for user in users:
                    user.replace_all_uses_with(rows[0][user.args[1]])
    graph.eliminate_dead_code()


class RowsPass(CustomGraphPass):
    """`split_rows` as inductor's post-grad pass; its uuid keys inductor's on-disk cache."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        split_rows(graph)

    def uuid(self) -> str:
        return "descentlab-split-rows-4"


def raise_recompile_limit() -> None:
    """Every objective x optimizer is a closure over the same `step` code object, and dynamo
    allows 8 variants per code object before it silently stops compiling it. Raise that limit.
    (Here, not at import: importing dynamo takes half a second that eager runs need not pay.)"""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 256))
            break
