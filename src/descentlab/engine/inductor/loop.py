"""The compiled engine's inductor backend: the gradient and the optimizer's update compiled
together by `torch.compile`, on a structure-of-arrays ``(d, N)`` layout, run in blocks with the
stop rules checked once per block and replayed exactly where something happened. It runs where
the C loop cannot: on a GPU, and for a CPU callable the C translator refuses.

Why structure of arrays: inductor vectorizes over the innermost dimension, so ``(N, d)`` uses
d of a vector's lanes while ``(d, N)`` fills them. The objective still sees ``(N, d)``: it gets
``x.T``, a view whose columns are contiguous.

Why blocks: the eager loop's bookkeeping per step (divergence with a revert to the previous
position, tolerance, stopped points held, statuses and step counts) reads and writes six more
arrays a step. The lean step (`_lean`) instead only poisons a point that meets an event (value
not finite, out of the blow-up box, gradient norm below tol): its position becomes NaN, which
costs no memory traffic and holds it for the rest of the block. The block's last step reports
the NaNs, and only those points are run again from the block's start through the full
iteration (`_iteration`, the eager loop's rules in the same order). Every other point took
exactly the steps the full rules would have taken.

Why several steps per call: one step reads and writes x and the optimizer's state, so it is
bound by memory traffic; with only final positions kept, a call runs `STEPS_PER_CALL` steps in
one loop over the points (`fusion.RowsPass` lets inductor fuse them), crossing memory once.

The update rules are torch.optim's single-tensor formulas (`updates`), so the engines agree to
float rounding (tested for every optimizer here). Hyper-parameters enter packed in one tensor,
so a new learning rate reuses the compiled code. The torch internals this backend uses are all
in `fusion`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from collections.abc import Callable

import torch

from ...status import CONVERGED, DIVERGED, INTERRUPTED
from ..spec import Spec
from ..updates import (
    HYPER,
    SUBSTEP,
    base_kind,
    bias_corrections,
    call_scalars,
    coordinate_norm,
    floats,
    hyper,
    kind_of,
    packed_scalars,
    rate_at,
    update_rule,
    zero_state,
)

# kernels by `Spec.key` and kernel (named objectives), or by function for a callable (an entry
# goes when the function does, so a reused id never finds another function's kernel)
_CACHE: dict[tuple, Callable] = {}
_BY_FUNCTION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _torch_compiled(spec: Spec, kernel: tuple[str, int]):
    from .fusion import RowsPass, raise_recompile_limit

    raise_recompile_limit()
    lean = _lean(spec, *kernel)
    options = {"post_grad_custom_pre_pass": RowsPass()} if kernel[1] > 1 else None
    return torch.compile(lean, options=options)


def _cache_for(spec: Spec) -> tuple[dict, tuple]:
    """Where `spec`'s kernels are kept, and their key prefix: by `Spec.key`, or for a callable
    by its function (not weakly referenceable: kept for this run only)."""
    if spec.key is not None:
        return _CACHE, spec.key
    try:
        return _BY_FUNCTION.setdefault(spec.function, {}), spec.rest
    except TypeError:
        return {}, spec.rest


def _compiled(spec: Spec, kernel: tuple[str, int]):
    """The kernel, from this process's cache, else `torch.compile` (compiling happens at its
    first call)."""
    cache, prefix = _cache_for(spec)
    step = cache.get((*prefix, *kernel))
    if step is None:
        step = cache[(*prefix, *kernel)] = _torch_compiled(spec, kernel)
    return step


def ready(spec: Spec, every: int | None) -> bool:
    """Whether this process has compiled every kernel a run of `spec` needs."""
    if spec.key is not None:
        cache, prefix = _CACHE, spec.key
    else:
        try:
            cache, prefix = _BY_FUNCTION.get(spec.function, {}), spec.rest
        except TypeError:
            return False
    return all((*prefix, *kernel) in cache for kernel in _kernels(every))


def _iteration(spec: Spec):
    """One iteration with every rule of the eager loop, in its order, on coordinates held as a
    tuple of ``(N,)`` tensors; run eagerly by `_Replay` on the points of a block that met an
    event. Returns the next position, the stop state, and the (reverted) position, value and
    gradient norm of this iteration, for recording.
    """
    fn, order, clamp = spec.objective.fn, spec.order, spec.clamp
    update = update_rule(spec.kind, spec.nesterov)

    def value_and_grad(cols):
        # autograd, as the eager engine computes it
        with torch.enable_grad():
            leaves = tuple(c.detach().requires_grad_() for c in cols)
            v = fn(torch.stack(leaves, dim=-1))
            if not v.requires_grad:  # f does not depend on x
                return tuple(torch.zeros_like(c) for c in cols), v
            g = torch.autograd.grad(v.sum(), leaves, allow_unused=True, materialize_grads=True)
        return g, v.detach()

    def iteration(cols, prev, vp, gnp, active, status, taken, k, state, h, tol, limit, lo, hi):
        g, v = value_and_grad(cols)
        gn = coordinate_norm(g, order)
        ok = torch.isfinite(v) & torch.isfinite(gn) & (coordinate_norm(cols, math.inf) <= limit)
        bad = active & ~ok
        back = bad & (k > 0)  # at the start there is no earlier position to go back to
        cols = tuple(torch.where(back, p, c) for p, c in zip(prev, cols, strict=True))
        status = torch.where(bad, DIVERGED, status)
        taken = torch.where(bad, k, taken)
        active = active & ~bad
        done = active & (gn < tol)
        status = torch.where(done, CONVERGED, status)
        taken = torch.where(done, k, taken)
        active = active & ~done
        moved, state = zip(
            *(update(c, gi, st, h) for c, gi, st in zip(cols, g, state, strict=True)),
            strict=True,
        )
        if clamp:
            moved = tuple(torch.clamp(m, lo[j], hi[j]) for j, m in enumerate(moved))
        new = tuple(torch.where(active, m, c) for m, c in zip(moved, cols, strict=True))
        v = torch.where(back, vp, v)
        gn = torch.where(back, gnp, gn)
        return new, active, status, taken, state, cols, v, gn

    return iteration


def _lean(spec: Spec, out: str, substeps: int):
    """`substeps` steps on a ``(d, N)`` tensor with no bookkeeping but a poison: a point whose
    value is not finite, that left the blow-up box or (when tol is set) whose gradient norm is
    below tol has its position set to NaN, so every later step keeps it NaN and the block's
    last step reports it. A non-finite gradient needs no test: the update carries it into the
    position (unless clamped into the box, and then it is tested).

    `out` says what else comes back: ``"plain"`` nothing; ``"flags"`` (the block's last call)
    the position, value and gradient norm of its last step, the norm NaN where that step meets
    an event (every rule tested) or a point was poisoned earlier, and the count of those NaNs;
    ``"record"`` (one step) writes position, value and that norm into the recorder's rows
    (passed in, written in the same loop). In a ``"flags"`` call the sub-steps before the last
    can be dead (`call_scalars`): they leave position and state as they are.

    Each coordinate's new row is computed on its own and stacked: inductor then emits one loop
    over the points that reads x once and writes each row once (with several steps per call,
    `fusion.RowsPass` keeps it one loop). Written as one ``(d, N)`` expression it split into
    two loops and recomputed the gradient per row (5x slower); a bool output cost 4x more than
    a float one, hence the NaN.
    """
    fn, order, clamp, tol_set = spec.objective.fn, spec.order, spec.clamp, spec.tol_set
    update = update_rule(spec.kind, spec.nesterov)
    first_sub = len(HYPER) + 2

    def value_sum(x):
        v = fn(x.T)
        return v.sum(), v

    value_and_grad = torch.func.grad_and_value(value_sum, has_aux=True)

    def step(x, state, packed, lo, hi):
        # one tensor of scalars (`packed_scalars`): dynamo checks one argument's guards, not many
        scalars = packed.unbind(0)
        common = dict(zip(HYPER, scalars, strict=False))
        tol, limit = scalars[len(HYPER)], scalars[len(HYPER) + 1]
        rows = x.unbind(0)
        parts = [tuple(s[j] for s in state) for j in range(len(rows))]
        for i in range(substeps):
            at = first_sub + SUBSTEP * i
            live, lr, step_size, inv_c2sqrt = scalars[at : at + SUBSTEP]
            h = {**common, "lr": lr, "step_size": step_size, "inv_c2sqrt": inv_c2sqrt}
            here = x if i == 0 else torch.stack(rows)
            g, (_, v) = value_and_grad(here)
            grads = g.unbind(0)
            last = i == substeps - 1
            if last and out != "plain":
                gn = coordinate_norm(grads, order)
                inside = coordinate_norm(rows, math.inf) <= limit
                event = ~(torch.isfinite(v) & torch.isfinite(gn) & inside) | (gn < tol)
            else:
                spread = v - v  # 0 where finite, NaN where not: one test for value and box
                if clamp:
                    spread = spread + sum(gj - gj for gj in grads)
                event = ~(coordinate_norm(rows, math.inf) + spread <= limit)
                if tol_set:
                    event = event | (coordinate_norm(grads, order) < tol)
            dead = out == "flags" and not last  # only a flags call has dead sub-steps
            new, new_parts = [], []
            for j, (row, gj) in enumerate(zip(rows, grads, strict=True)):
                moved, st = update(row, gj, parts[j], h)
                if clamp:
                    moved = torch.clamp(moved, lo[j], hi[j])
                moved = torch.where(event, math.nan, moved)
                if dead:
                    moved = torch.where(live > 0, moved, row)
                    st = tuple(
                        torch.where(live > 0, a, b) for a, b in zip(st, parts[j], strict=True)
                    )
                new.append(moved)
                new_parts.append(st)
            rows, parts = tuple(new), new_parts
        new_x = torch.stack(rows)
        state = tuple(torch.stack(p) for p in zip(*parts, strict=True)) if state else ()
        if out == "plain":
            return new_x, state
        gn = torch.where(event, math.nan, gn)
        if out == "flags":  # NaNs counted in the same loop (gn != gn: isnan is not vectorized)
            return new_x, state, here, v, gn, (gn != gn).sum()
        return new_x, state, v, gn

    if out != "record":
        return step

    def record(path, values, norms, x, *args):
        new, state, v, gn = step(x, *args)
        path.copy_(x)  # the recorder's (d, N) row: see Recorder.coordinate_layout
        values.copy_(v)
        norms.copy_(gn)
        return new, state

    return record


# Steps between checks; a block with an event is replayed for the points it touched. Each block
# ends in a "flags" call, which writes 3 rows more than a plain one and counts NaNs: longer
# blocks spend less on them, and a replay costs about `steps` eager iterations either way.
BLOCK = 64
# Steps per compiled call when only final positions are kept: inductor runs them in one loop,
# so x and the optimizer's state cross memory once per 4 steps (benchmarks/unroll.py)
STEPS_PER_CALL = 4


def _kernels(every: int | None) -> list[tuple[str, int]]:
    """The compiled kernels a run needs, as (output, steps per call)."""
    if every is None:
        return [("plain", STEPS_PER_CALL), ("flags", STEPS_PER_CALL)]
    if every == 1:
        return [("record", 1)]
    return [("plain", 1), ("flags", 1), ("record", 1)]


def compiled_loop(spec: Spec, plan, x0, s, rec, interrupted, bar):
    """Same contract as `descent.loop.eager_loop`: returns x, v, gn, status, taken, k (x as (N, d)).

    Runs blocks of `BLOCK` lean steps (`_lean`): no per-step bookkeeping, only the poison;
    `STEPS_PER_CALL` steps per call when only final positions are kept. After a block, the
    points whose events flag was raised are replayed from the block's start with the full
    iteration (`_iteration`, eager: the exact rules of the eager loop); the rest took exactly
    the steps the full rules would have taken. A point that stopped is parked as NaN (held for
    good: its value is not finite) and its final position, value and norm are kept aside.
    """
    n = x0.shape[0]
    dtype, device = x0.dtype, x0.device
    full = s.every is not None
    kernels = {out: _compiled(spec, (out, k)) for out, k in _kernels(s.every)}
    per_call = 1 if full else STEPS_PER_CALL
    rec.engine = "compiled"
    if full:
        rec.coordinate_layout()
    # the recorder's rows live on the host: a kernel on another device writes its row here,
    # and the row is copied over (the kernel cannot store across devices)
    row_on_device = (
        tuple(torch.empty(shape, dtype=dtype, device=device) for shape in (x0.T.shape, n, n))
        if full and device.type != "cpu"
        else None
    )
    replay = _Replay(spec, plan, s, dtype, device)
    x = torch.stack(x0.unbind(1))  # (d, N); quicker than x0.T.contiguous()
    state = zero_state(kind_of(plan), x)
    # where stopped points ended (written when they stop; untouched pages cost nothing)
    held = (
        torch.empty_like(x0),
        torch.empty(n, dtype=dtype, device=device),
        torch.empty(n, dtype=dtype, device=device),
    )
    # which points still run, how they stopped, after how many steps: made when one stops
    # (three arrays of fresh pages that a run with no events never needs)
    active = status = taken = None
    prev = None  # position, value and norm at the iteration before the block
    tol, limit, lo, hi = replay.limits
    h = floats(plan)
    common = packed_scalars(h, float(tol), float(limit))
    size = len(common) + len(call_scalars(h, 0, per_call))
    packed = torch.empty(size, dtype=dtype, device=device)
    stopped_count = 0
    k0 = 0
    while True:
        k1 = min(k0 + BLOCK, s.steps + 1)  # this block runs iterations k0 .. k1-1
        start, start_state, rows_before = x, state, len(rec.steps)
        parked = stopped_count > 0
        calls = -(-(k1 - k0) // per_call)
        dead = calls * per_call - (k1 - k0)  # sub-steps of the last call that change nothing
        # every call's scalars, sent to the device at once (a copy per call would wait on it)
        table = torch.tensor(
            [
                common
                + call_scalars(h, k0 + c * per_call, per_call, dead * (c == calls - 1), s.rates)
                for c in range(calls)
            ],
            dtype=dtype,
        ).to(device)
        for c in range(calls):
            k = k0 + c * per_call  # with per_call 1, the iteration this call runs
            packed.copy_(table[c])
            if full and k % s.every == 0:
                row = rec.next_row(k) if row_on_device is None else row_on_device
                here = x
                x, state = kernels["record"](*row, x, state, packed, lo, hi)
                if row_on_device is not None:
                    rec.add(k, row[0].T, row[1], row[2])
                v, gn = row[1], row[2]
                nans = None
            elif c == calls - 1:
                x, state, here, v, gn, nans = kernels["flags"](x, state, packed, lo, hi)
            else:
                x, state = kernels["plain"](x, state, packed, lo, hi)
        # `here`, v, gn: the last iteration's position, value and norm (NaN norm: an event;
        # parked points are NaN too, so new events are NaNs beyond the parked ones)
        if nans is None:
            nans = torch.isnan(gn).sum()
        if int(nans) > stopped_count:
            if active is None:
                active = torch.ones(n, dtype=torch.bool, device=device)
                status = torch.zeros(n, dtype=torch.int8, device=device)
                taken = torch.zeros(n, dtype=torch.int64, device=device)
            hit = torch.nonzero(torch.isnan(gn).logical_and_(active)).flatten()
            out = replay(hit, start, start_state, prev, k0, k1, rec, rows_before)
            moved, moved_state, act, st, tk, (hx, hv, hgn) = out
            x[:, hit], here[:, hit], v[hit], gn[hit] = moved, hx.T, hv, hgn
            for whole, part in zip(state, moved_state, strict=True):
                whole[:, hit] = part
            stopped = hit[~act]
            for keep, value in zip(held, (hx[~act], hv[~act], hgn[~act]), strict=True):
                keep[stopped] = value
            x[:, stopped] = math.nan  # parked: every later step sees "not finite" and holds it
            active[stopped], status[stopped], taken[stopped] = False, st[~act], tk[~act]
            stopped_count += len(stopped)
        if full and parked:  # rows this block wrote for points parked before it
            idx = torch.nonzero(~active).flatten()
            idx = idx[taken[idx] < k0]
            r = slice(rows_before, len(rec.steps))
            rec.put(r, idx, held[0][idx], held[1][idx], held[2][idx])
        k = k1 - 1
        if stopped_count == n:  # the eager loop stops at the iteration the last point stopped
            k = int(taken.max())
            rec.steps = [r for r in rec.steps if r <= k]
            break
        if k1 == s.steps + 1:
            break
        if interrupted():
            status = (
                torch.full((n,), INTERRUPTED, dtype=torch.int8, device=device)
                if active is None
                else torch.where(active, INTERRUPTED, status)
            )
            break
        prev = (here, v.clone(), gn.clone()) if full else (here, v, gn)  # rows get patched
        k0 = k1
        bar.update(k1)
    if stopped_count == 0:  # (v and gn may be the recorder's rows: hand out copies)
        if status is None:
            status = torch.zeros(n, dtype=torch.int8, device=device)
        return (
            here.T,  # a view: a contiguous copy costs a tenth of a short run
            v.clone() if full else v,
            gn.clone() if full else gn,
            status,
            torch.full((n,), k, dtype=torch.int64, device=device),
            k,
        )
    taken = torch.where(active, k, taken)  # running or interrupted: every iteration so far
    final_x = torch.where(active[:, None], here.T, held[0])
    final_v = torch.where(active, v, held[1])
    final_gn = torch.where(active, gn, held[2])
    return final_x, final_v, final_gn, status, taken, k


class _Replay:
    """The full iteration (`_iteration`, run eagerly) over the points of a block that met an
    event: from the block's start to its end, recording their rows."""

    def __init__(self, spec: Spec, plan, s, dtype, device):
        self.kind = spec.kind
        self.step = _iteration(spec)
        self.s = s
        self.h, self.floats = hyper(plan, dtype, device), floats(plan)
        scalar = {"dtype": dtype, "device": device}
        tol = torch.tensor(-math.inf if s.tol is None else s.tol, **scalar)
        limit = torch.tensor(s.limit, **scalar)
        lo, hi = s.box if s.box is not None else (torch.zeros(1, **scalar),) * 2
        self.limits = (tol, limit, lo, hi)

    def __call__(self, idx, start, start_state, prev, k0, k1, rec, rows_before):
        s, m = self.s, len(idx)
        cols = tuple(start[j, idx] for j in range(start.shape[0]))
        state = tuple(tuple(part[j, idx] for part in start_state) for j in range(len(cols)))
        if prev is None:
            before = (cols, torch.zeros_like(cols[0]), torch.zeros_like(cols[0]))
        else:
            px, pv, pgn = prev
            before = (tuple(px[j, idx] for j in range(len(cols))), pv[idx], pgn[idx])
        active = torch.ones(m, dtype=torch.bool, device=idx.device)
        status = torch.zeros(m, dtype=torch.int8, device=idx.device)
        taken = torch.zeros(m, dtype=torch.int32, device=idx.device)
        row = rows_before
        for k in range(k0, k1):
            kt = torch.tensor(k, dtype=torch.int32, device=idx.device)
            at = rate_at(self.floats, k, s.rates)
            if s.rates is not None:
                self.h["lr"] = self.h["lr"].new_tensor(at["lr"])
            if base_kind(self.kind) == "adam":
                step_size, inv_c2sqrt = bias_corrections(at, k + 1)
                self.h["step_size"] = self.h["step_size"].new_tensor(step_size)
                self.h["inv_c2sqrt"] = self.h["inv_c2sqrt"].new_tensor(inv_c2sqrt)
            out = self.step(cols, *before, active, status, taken, kt, state, self.h, *self.limits)
            new, active, status, taken, state, here, v, gn = out
            if s.every is not None and k % s.every == 0:
                x = torch.stack(here, dim=-1)
                rec.put(row, idx, x, v, gn)
                row += 1
            before, cols = (here, v, gn), new
        moved = torch.stack(new)
        state = tuple(torch.stack(parts) for parts in zip(*state, strict=True)) if state[0] else ()
        return moved, state, active, status, taken.to(torch.int64), (torch.stack(here, -1), v, gn)


@contextlib.contextmanager
def quiet_torch():
    """Drop the deprecation notices torch's own modules raise while dynamo and inductor load
    and compile (importing inductor warns that `torch.jit.script_method` is deprecated). The
    user can do nothing about them, and under ``python -W error`` or pytest's
    ``filterwarnings = error`` each one would turn a compile into a fallback. Warnings from
    anywhere else (f itself, say) pass as before."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=r"torch(\.|$)")
        yield
