"""Figures of fits: the loss by step, and the example's predictions after chosen steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DescentError
from ._common import PALETTE, new_figure
from .static import _axes, _finish


def loss(learn, ax=None, path=None):
    """Training loss per step (log scale when it spans decades) and validation loss per epoch."""
    steps = np.arange(1, len(learn.history["loss"]) + 1)
    if not len(steps):
        raise DescentError("the Learner has not been fitted yet; call fit first")
    fig, ax = _axes(ax, (6.4, 4))
    values = np.array(learn.history["loss"])
    ax.plot(steps, values, color="#3b4cc0", lw=1.2, label="train loss (per step)")
    epochs = learn.history.epochs
    if epochs and "valid_loss" in epochs[0]:
        per_epoch = len(steps) / len(epochs)
        ax.plot(
            [r["epoch"] * per_epoch for r in epochs],
            [r["valid_loss"] for r in epochs],
            "o-",
            color="#ff5a36",
            label="valid loss (per epoch)",
        )
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 1e3:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=f"{learn.loss_name} loss")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def preds(learn, steps: Sequence[int] = (0, 1, 2, 3), path=None, ylim=None):
    """The example's show_preds: data and the model's predictions after each chosen step."""
    x = learn.x
    if x.ndim > 1 and x.shape[1] != 1:
        raise DescentError(
            "preds draws 1-D inputs (like the example's time); this model has several"
        )
    fig, axes = new_figure(1, len(steps), figsize=(3.2 * len(steps), 3), squeeze=False, sharey=True)
    xs = x.reshape(-1).numpy()
    for ax, k in zip(axes[0], steps, strict=True):
        p = learn.preds_at(k).reshape(-1).numpy()
        ax.scatter(xs, learn.y.numpy(), s=14, color="#3b4cc0", label="data")
        ax.scatter(xs, p, s=14, color="#ff5a36", label="prediction")
        ax.set(title=f"after {k} step{'s' * (k != 1)}", xlabel="x")
        if ylim:
            ax.set_ylim(*ylim)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)


def lr_find(result, ax=None, path=None):
    """The learning-rate finder's curve (`Learner.lr_find`): smoothed loss against the rate on
    a log scale, the raw losses faint behind it, and the suggested rate marked."""
    if not len(result.lrs):
        raise DescentError("the finder recorded no rates")
    fig, ax = _axes(ax, (6.4, 4))
    ax.plot(result.lrs, result.raw_losses, color="#3b4cc0", alpha=0.25, lw=1, label="loss")
    ax.plot(result.lrs, result.losses, color="#3b4cc0", lw=1.8, label="smoothed")
    ax.axvline(result.suggestion, color="#ff5a36", ls="--", lw=1.2)
    at = float(np.interp(np.log(result.suggestion), np.log(result.lrs), result.losses))
    label = f"suggestion {result.suggestion:.2g}"
    ax.plot([result.suggestion], [at], "o", color="#ff5a36", label=label)
    finite = result.losses[np.isfinite(result.losses)]
    raw = result.raw_losses[np.isfinite(result.raw_losses)]
    if finite.size:  # the explosion at the end would flatten the rest: cut it off
        low = min(finite.min(), raw.min() if raw.size else finite.min())
        top = min(max(finite.max(), raw.max() if raw.size else 0), 4 * finite[0])
        ax.set_ylim(low - 0.05 * (top - low), top)
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="learning-rate finder")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def schedule(obj, lr: float | None = None, steps: int | None = None, ax=None, path=None):
    """The learning rate against step: of a Trajectory, a Race (one line per entrant) or a
    fitted Learner (what each step took), or of a schedule itself (a name, ``(name,
    {settings})`` or a factory) from rate `lr` over `steps` steps, run on a throw-away
    optimizer.

    >>> fig = schedule(("cosine", {"warmup": 5}), lr=0.3, steps=30)
    """
    lines = _rate_lines(obj, lr, steps)
    fig, ax = _axes(ax, (6.4, 3.6))
    for (label, rates), colour in zip(lines, PALETTE * 4, strict=False):
        ax.plot(
            np.arange(len(rates)), rates, color=colour, lw=1.6, label=label, drawstyle="steps-post"
        )
    positive = np.concatenate([r[r > 0] for _, r in lines]) if lines else np.array([])
    if positive.size and positive.max() / positive.min() > 1e3:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate at each step")
    if len(lines) > 1:
        ax.legend(fontsize=8)
    return _finish(fig, path)


def _rate_lines(obj, lr, steps) -> list[tuple[str, np.ndarray]]:
    import torch

    from ..descent import schedules
    from ..descent.race import Race
    from ..descent.trajectory import Trajectory

    if isinstance(obj, Trajectory):
        return [(obj.meta.get("schedule") or "constant", obj.rates)]
    if isinstance(obj, Race):
        return [(label, run.rates) for label, run in obj]
    history = getattr(obj, "history", None)
    if history is not None and "lr" in history:
        if not history["lr"]:
            raise DescentError("the Learner has not been fitted yet; call fit first")
        return [("per step", np.asarray(history["lr"], dtype=np.float64))]
    if lr is None or steps is None:
        raise DescentError("to draw a schedule itself, give its rate and length: lr=..., steps=...")
    factory = schedules.resolve(obj, steps)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    made, rates = factory(opt), []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()  # (no gradient: nothing moves; torch wants the order optimizer, scheduler)
        made.step()
    return [(schedules.describe(obj), np.asarray(rates))]
