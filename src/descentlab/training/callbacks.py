"""Callbacks: everything beyond the seven steps plugs in here, never into the loop itself.

A callback defines any of ``before_fit, after_fit, before_epoch, after_epoch, before_batch,
after_batch`` (each receives the Learner) and an ``order`` (lower runs first). Control flow
uses small exceptions, as in fastai's miniai: raising `CancelFit` ends the fit cleanly.
"""

from __future__ import annotations

import copy
import math
import sys

import torch

from ..errors import DescentError, MemoryNeedError
from ..memory import limit_note, memory_budget


class CancelFit(Exception):
    """Stop fitting now; the message says why (kept as ``learn.stop_reason``)."""


class Callback:
    order = 0


class PrintLosses(Callback):
    """Example 002's output: the loss of every step, printed as ``print(loss.item())``."""

    order = 90

    def __init__(self, file=None):
        self.file = file

    def after_batch(self, learn):
        if learn.training:
            print(learn.batch_loss.item(), file=self.file or sys.stdout)


class PrintTable(Callback):
    """fastai-style epoch table: epoch, train loss, valid loss, metrics, time."""

    order = 90

    def __init__(self, file=None):
        self.file = file

    def _line(self, cells):
        print(
            "  ".join(f"{c:>12}" if i else f"{c:>5}" for i, c in enumerate(cells)),
            file=self.file or sys.stdout,
        )

    def before_fit(self, learn):
        self.columns = [
            "epoch",
            "train_loss",
            *(["valid_loss"] if learn.has_valid else []),
            *learn.metric_names,
            "time",
        ]
        self._line(self.columns)

    def after_epoch(self, learn):
        row = learn.history.epochs[-1]
        cells = []
        for c in self.columns:
            v = row[c]
            if c == "epoch":
                cells.append(str(v))
            elif c == "time":
                cells.append(f"{int(v // 60):02d}:{v % 60:05.2f}")
            else:
                cells.append(f"{v:.6f}")
        self._line(cells)


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved by `min_delta` for `patience` epochs.

    Monitors the validation loss when there is a validation split, else the training loss;
    with `restore_best`, the best epoch's weights are put back at the end.
    """

    order = 50

    def __init__(
        self,
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = True,
        monitor: str | None = None,
    ):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise DescentError(f"patience must be an integer >= 1, got {patience!r}")
        if not (min_delta >= 0):
            raise DescentError(f"min_delta must be >= 0, got {min_delta!r}")
        self.patience, self.min_delta, self.restore_best, self.monitor = (
            patience,
            min_delta,
            restore_best,
            monitor,
        )

    def before_fit(self, learn):
        self.key = self.monitor or ("valid_loss" if learn.has_valid else "train_loss")
        self.best, self.best_epoch, self.best_state, self.wait = math.inf, None, None, 0

    def after_epoch(self, learn):
        value = learn.history.epochs[-1][self.key]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, learn.epoch, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(learn.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            raise CancelFit(
                f"early stopping: {self.key} did not improve for {self.patience} epochs "
                f"(best {self.best:.6g} at epoch {self.best_epoch})"
            )

    def after_fit(self, learn):
        if self.restore_best and self.best_state is not None:
            learn.model.load_state_dict(self.best_state)
            learn.restored_epoch = self.best_epoch


class StopAtLoss(Callback):
    """Stop once the monitored loss (validation if present, else training) reaches `target`."""

    order = 50

    def __init__(self, target: float):
        self.target = target

    def after_epoch(self, learn):
        row = learn.history.epochs[-1]
        key = "valid_loss" if learn.has_valid else "train_loss"
        if row[key] <= self.target:
            raise CancelFit(f"target reached: {key} {row[key]:.6g} <= {self.target:g}")


class Schedule(Callback):
    """A learning-rate schedule over one fit (`Learner.fit(schedule=...)`): a torch scheduler
    on the learner's optimizer, stepped after every batch (``per="batch"``) or every epoch;
    the rate each step took is in ``history["lr"]``. The rate from before the fit is put back
    after it, so the next fit starts from it."""

    order = 10

    def __init__(self, factory, per: str = "batch"):
        if per not in ("batch", "epoch"):
            raise DescentError(f"a schedule steps per 'batch' or per 'epoch', got {per!r}")
        self.factory, self.per = factory, per

    def before_fit(self, learn):
        self.before = [g["lr"] for g in learn.opt.param_groups]
        self.scheduler = self.factory(learn.opt)

    def after_batch(self, learn):
        if learn.training and self.per == "batch":
            self.scheduler.step()

    def after_epoch(self, learn):
        if self.per == "epoch":
            self.scheduler.step()

    def after_fit(self, learn):
        for group, lr in zip(learn.opt.param_groups, getattr(self, "before", ()), strict=False):
            group["lr"] = lr  # (nothing to put back when the fit ended before it began)


class KeepWeights(Callback):
    """Keep the flat parameters every `every` steps, and at the start and end of each fit
    (`Learner.fit(keep_weights=k)`): ``learn.weights`` ``(K, P)`` and ``learn.weights_at``.
    The memory they take is checked before the fit starts."""

    order = 60  # after EarlyStopping puts the best weights back: the end is what the fit left

    def __init__(self, every: int, max_memory: float | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise DescentError(
                f"keep_weights must be a whole number of steps >= 1 (or None), got {every!r}"
            )
        self.every, self.max_memory = every, max_memory

    def check(self, learn, steps: int) -> None:
        """Refuse a fit of `steps` steps whose kept weights would not fit in memory."""
        size = sum(p.numel() * p.element_size() for p in learn.model.parameters())
        rows = steps // self.every + 2
        need = rows * size
        budget = memory_budget(self.max_memory) - len(learn.weights_at) * size
        if need > budget:
            fits = max(0, int(budget // size) - 2)
            every = math.ceil(steps / fits) if fits else None
            remedy = f"use keep_weights={every} or more" if every else "fit fewer steps"
            raise MemoryNeedError(
                f"keeping the weights every {self.every} step(s) of {steps:,} keeps {rows:,} "
                f"copies of {size / 1e6:.1f} MB, {need / 1e9:.2f} GB, but "
                f"{max(budget, 0) / 1e9:.2f} GB is available{limit_note(budget)}; {remedy}"
            )

    def _keep(self, learn) -> None:
        if learn.weights_at and learn.weights_at[-1] == learn.steps_done:
            return
        learn._kept.append(learn._param_vector())
        learn.weights_at.append(learn.steps_done)

    def before_fit(self, learn):
        self._keep(learn)

    def after_batch(self, learn):
        if learn.training and learn.steps_done % self.every == 0:
            self._keep(learn)

    def after_fit(self, learn):
        vector = learn._param_vector()
        if learn.weights_at and learn.weights_at[-1] == learn.steps_done:
            if torch.equal(learn._kept[-1], vector):
                return
            learn._kept[-1] = vector  # the fit put other weights back (EarlyStopping's best)
            return
        learn._kept.append(vector)
        learn.weights_at.append(learn.steps_done)
