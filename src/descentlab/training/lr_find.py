"""Learning rates: the finder (one pass with an exponentially growing rate) and the sweep (the
final loss for each of several rates — the data behind "too low, good, too high")."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DescentError, check_positive
from ..status import DIVERGING_GROWTH
from .callbacks import CancelFit
from .threads import using_threads


@dataclass
class LRFind:
    """The finder's curve and its suggestion; ``float(result)`` is the suggested rate."""

    lrs: np.ndarray
    losses: np.ndarray  # smoothed (exponential moving average, debiased)
    raw_losses: np.ndarray
    suggestion: float

    def __float__(self) -> float:
        return self.suggestion

    def plot(self, **kwargs):
        """Loss against rate (log scale), the suggestion marked (`plot.lr_find`)."""
        from .. import plot

        return plot.lr_find(self, **kwargs)

    def _repr_png_(self) -> bytes:
        from ..plot._common import png_bytes

        return png_bytes(self.plot())

    def __repr__(self) -> str:
        span = f"{self.lrs[0]:.1e}..{self.lrs[-1]:.1e}"
        return f"<LRFind {len(self.lrs)} rates {span}, suggestion {self.suggestion:.2e}>"


def _snapshot(learn):
    return copy.deepcopy(learn.model.state_dict()), copy.deepcopy(learn.opt.state_dict())


def _restore(learn, snap) -> None:
    learn.model.load_state_dict(snap[0])
    learn.opt.load_state_dict(snap[1])


def lr_find(
    learn,
    start: float = 1e-7,
    end: float = 10.0,
    num: int = 100,
    beta: float = 0.98,
    from_start: bool = True,
) -> LRFind:
    """Train for up to `num` batches with the rate growing from `start` to `end` exponentially,
    stop when the smoothed loss exceeds 4× its minimum or stops being finite, and suggest the
    rate where the smoothed loss falls fastest against log(lr). The model and optimizer are put
    back as they were.

    `from_start`: sweep from the learner's initial parameters (`initialize`, its seed) with a
    fresh optimizer state, so a learner already fitted gets the same suggestion as a new one
    (from a trained model the loss is near its floor and barely falls at any rate); False
    sweeps from the current parameters.
    """
    check_positive("start", start)
    check_positive("end", end)
    if not start < end or num < 5:
        raise DescentError("lr_find needs start < end and num >= 5")
    snap = _snapshot(learn)
    history, steps, epoch = learn.history, learn.steps_done, learn.epoch
    if from_start and steps:  # as a new learner: its parameters, optimizer state and batches
        learn.initialize()
        learn.opt.state.clear()
        learn.epoch = 0
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    learn.training = True
    learn.model.train()
    with using_threads(learn.threads):
        try:
            i = 0
            while i < num:
                for idx in learn._batches():
                    if i >= num:
                        break
                    lr = start * (end / start) ** (i / (num - 1))
                    for group in learn.opt.param_groups:
                        group["lr"] = lr
                    x, y = (learn.x, learn.y) if idx is None else (learn.x[idx], learn.y[idx])
                    preds = learn.predict(x)
                    loss = learn.loss(preds, y)
                    value = loss.item()
                    if not math.isfinite(value):
                        i = num
                        break
                    learn.gradient(loss)
                    learn.step()
                    learn.zero_grad()
                    avg = beta * avg + (1 - beta) * value
                    s = avg / (1 - beta ** (i + 1))
                    lrs.append(lr)
                    raw.append(value)
                    smooth.append(s)
                    best = min(best, s)
                    i += 1
                    if s > 4 * best:
                        i = num
                        break
        except CancelFit:
            pass
        finally:
            learn.training = False
            _restore(learn, snap)
            learn.history, learn.steps_done, learn.epoch = history, steps, epoch
    if len(lrs) < 5:
        raise DescentError(
            f"the loss diverged within {len(lrs)} steps from lr={start:g}; start lower"
        )
    lr_arr = np.array(lrs)
    return LRFind(lr_arr, np.array(smooth), np.array(raw), suggest(lr_arr, np.array(raw)))


def suggest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss falls fastest against log10(lr), before the curve's minimum.

    The exponential average that decides when to stop lags tens of steps behind, so the slope
    is taken on a centered moving average instead, which has no lag.
    """
    w = max(3, len(losses) // 15) | 1
    padded = np.pad(losses, w // 2, mode="edge")
    centered = np.convolve(padded, np.ones(w) / w, mode="valid")
    lowest = int(np.argmin(centered))
    if lowest < 2:
        return float(lrs[max(lowest, 0)] / 10)
    slope = np.gradient(centered[: lowest + 1], np.log10(lrs[: lowest + 1]))
    return float(lrs[int(np.argmin(slope))])


def _fresh_copy(learn):
    """A Learner sharing `learn`'s data but with its own model at the initial parameters (those
    recorded before the first step, else a fresh seeded initialization) and a new optimizer."""
    from torch.nn.utils import vector_to_parameters

    trial = copy.copy(learn)
    trial.model = copy.deepcopy(learn.model)
    if learn.history["params"]:
        vector_to_parameters(learn.history["params"][0].clone(), trial.model.parameters())
    else:
        trial.initialize()
    trial.opt = trial.plan.build(trial.model.parameters())
    trial.history = type(learn.history)()
    trial.callbacks, trial.verbose = [], False
    trial.steps_done, trial.epoch, trial.stop_reason = 0, 0, None
    return trial


def lr_sweep(learn, lrs: Sequence[float], epochs: int = 10):
    """Fit a fresh copy of `learn`'s initial model once per rate; returns a DataFrame with the
    final training loss (nan if it diverged), the status and the per-step losses. `learn`
    itself is left as it is.

    The status is in the vocabulary of `descentlab.status`: "diverged" (the loss stopped
    being finite and the fit stopped), "diverging" (it ran every epoch, but its last loss is a
    thousand times its first or more), "step limit" (it ran every epoch)."""
    import pandas as pd

    rows = []
    for lr in lrs:
        check_positive("lr", lr)
        trial = _fresh_copy(learn)
        for group in trial.opt.param_groups:
            group["lr"] = lr
        trial.fit(epochs)
        losses = trial.history["loss"]
        diverged = (
            trial.stop_reason is not None and "learning rate is too high" in trial.stop_reason
        ) or (bool(losses) and not math.isfinite(losses[-1]))
        growing = (
            not diverged
            and len(losses) > 1
            and not losses[-1] < DIVERGING_GROWTH * max(abs(losses[0]), 1e-3)
        )
        rows.append(
            {
                "lr": lr,
                "final_loss": math.nan if diverged or not losses else losses[-1],
                "status": "diverged" if diverged else "diverging" if growing else "step limit",
                "losses": losses,
            }
        )
    return pd.DataFrame(rows)
