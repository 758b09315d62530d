"""`Learner`: the seven steps of training as methods that read like the text.

    1. initialize   random parameters (seeded)
    2. predict      preds = model(x)
    3. loss         a number, small when the predictions are good
    4. gradient     loss.backward()
    5. step         params -= lr * grad (or any torch optimizer's step), then zero_grad
    6. repeat       over batches and epochs (`fit`)
    7. stop         after the epochs, or when a callback says so (early stopping, a target
                    loss, a loss that turned nan or infinite)

>>> import descentlab as dl
>>> time, speed = dl.datasets.noisy_quadratic(seed=0)
>>> learn = Learner(lambda t, p: p[0]*t**2 + p[1]*t + p[2], params=3, data=(time, speed),
...                 loss="mse", lr=1e-5, verbose=False)
>>> losses = learn.fit(10)["loss"]
>>> all(b < a for a, b in zip(losses, losses[1:]))
True
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..descent import optimizers, schedules
from ..errors import DescentError, check_positive
from ..progress import Progress
from . import losses as losses_
from .callbacks import (
    Callback,
    CancelFit,
    KeepWeights,
    PrintLosses,
    PrintTable,
    Schedule,
    StopAtLoss,
)
from .datasets import Dataset
from .functional import Weights
from .models import FunctionModel, reset
from .threads import choose_threads, using_threads


class History(dict):
    """Per step: ``loss``, ``lr`` and (for small models) ``params`` after k steps; where it was
    measured, ``sharpness`` as (step, sharpness, lr) rows; per epoch: rows in ``epochs``
    (epoch, train_loss, valid_loss, metrics, time)."""

    def __init__(self):
        super().__init__(loss=[], lr=[], params=[], sharpness=[])
        self.epochs: list[dict] = []

    def frame(self):
        """The epoch table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.epochs)


class Learner:
    """Fit a model to data with gradient descent, one readable step at a time.

    Args:
        model: a `torch.nn.Module`, or a function ``f(x, params)`` with ``params=`` (a count
            or initial tensor) as in example 002.
        data: ``(x, y)`` tensors or a `Dataset` (its own validation split is used).
        loss: ``mse``, ``rmse``, ``mae``/``l1``, ``cross_entropy``, ``binary`` or a callable.
        optimizer: a name as for `descend` (``gd``, ``sgd``, ``adam``, ...) or an Optimizer class.
        lr: learning rate.
        params: parameter count or initial tensor for a function model.
        batch_size: None for full-batch gradient descent (the example), else minibatch SGD with
            seeded shuffling.
        metrics: names (``accuracy``, ``mae``, ``rmse``) or callables, reported per epoch.
        valid: fraction (0-1) or count of examples held out for validation; None keeps all
            data for training (or uses the Dataset's own split).
        seed: seeds initialization, the split and the shuffling.
        zero_grad: reset gradients after each step (the example's ``params.grad = None``); False
            keeps PyTorch's accumulation, to see why the reset matters.
        init: re-initialize the model's parameters from `seed` (False keeps given weights).
        verbose: print while fitting (the example's loss lines for full-batch fits without a
            validation split, a fastai-style epoch table otherwise).
        record_params: keep the parameters after every step (default: when ≤ 10,000 of them).
        callbacks: extra `Callback` objects.
        threads: CPU threads while it fits (None: `choose_threads`, one for small models).
        **hyper: optimizer hyper-parameters (``momentum=0.9``, ...).
    """

    def __init__(
        self,
        model: nn.Module | Callable,
        data,
        loss: str | Callable = "mse",
        optimizer: str | type[torch.optim.Optimizer] = "gd",
        lr: float | None = None,
        *,
        params: int | torch.Tensor | None = None,
        batch_size: int | None = None,
        metrics: Sequence[str | Callable] = (),
        valid: float | int | None = None,
        seed: int = 0,
        zero_grad: bool = True,
        init: bool = True,
        verbose: bool = True,
        record_params: bool | None = None,
        callbacks: Sequence[Callback] = (),
        threads: int | None = None,
        **hyper,
    ):
        self.seed = seed
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise DescentError(f"threads must be a whole number from 1, got {threads!r}")
        self.model = _as_module(model, params)
        Weights(self.model)  # a model with no parameters is refused here, in one line
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.loss_fn = losses_.get(loss)
        named = [losses_.metric(m) for m in metrics]
        self.metric_names = [n for n, _ in named]
        self.metric_fns = [f for _, f in named]
        self.x, self.y, self.x_valid, self.y_valid = _split(data, valid, seed)
        self.batch_size = _batch_size(batch_size, len(self.x))
        self.resets_grad = zero_grad
        self.plan = optimizers.ready(optimizers.resolve(optimizer, lr, **hyper))
        if init:
            self.initialize()
        self.opt = self.plan.build(self.model.parameters())
        _check_fit(self)
        n_params = sum(p.numel() for p in self.model.parameters())
        self.record_params = n_params <= 10_000 if record_params is None else record_params
        self.threads = threads or choose_threads(n_params, self.batch_size or len(self.x))
        self.verbose = verbose
        self.callbacks = list(callbacks)
        self.history = History()
        self.training = False
        self.epoch = 0
        self.steps_done = 0
        self.stop_reason: str | None = None
        self.restored_epoch: int | None = None
        self._kept: list[torch.Tensor] = []  # `fit(keep_weights=k)`'s flat weights
        self.weights_at: list[int] = []  # and the step of each

    # ---- the seven steps ------------------------------------------------------------------
    def initialize(self) -> None:
        """Step 1: random parameters, reproducible from `seed`, without touching global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            reset(self.model)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Step 2: predictions of the current model."""
        return self.model(x)

    def loss(self, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Step 3: how far the predictions are from the targets."""
        return self.loss_fn(preds, y)

    def gradient(self, loss: torch.Tensor) -> None:
        """Step 4: d(loss)/d(params) by backpropagation, added into each ``param.grad``."""
        # an optimizer that takes Hessian-vector products (AdaHessian) needs the graph kept
        loss.backward(create_graph=self.plan.calling == "create_graph")

    def step(self) -> None:
        """Step 5: move the parameters against the gradient (the optimizer's rule)."""
        optimizers.step_with(self.opt, self.plan.calling, self._closure)

    def zero_grad(self) -> None:
        """Forget this step's gradients, as the example's ``params.grad = None``."""
        self.opt.zero_grad(set_to_none=True)

    # ---- repeat and stop ------------------------------------------------------------------
    def one_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._callback("before_batch")
        self.preds = self.predict(x)
        self.batch_loss = self.loss(self.preds, y)
        if self.training:
            self.loss_value = self.batch_loss.item()  # one read serves the check and the history
            if not math.isfinite(self.loss_value):
                raise CancelFit(
                    f"the loss became {self.loss_value} at step {self.steps_done} with "
                    f"lr={self.lr:g}: the learning rate is too high; try a smaller one such as "
                    f"lr={self.lr / 10:g}"
                )
            self.gradient(self.batch_loss)
            self.step()
            if self.resets_grad:
                self.zero_grad()
            self.steps_done += 1
            self._record_step()
        self._callback("after_batch")

    def one_epoch(self) -> None:
        began = _time.perf_counter()
        self.training = True
        self.model.train()
        self._callback("before_epoch")
        losses, counts = [], []
        batches = list(self._batches())
        with Progress(None if self.verbose else False, len(batches)) as bar:
            for i, idx in enumerate(batches):
                x, y = (self.x, self.y) if idx is None else (self.x[idx], self.y[idx])
                self.one_batch(x, y)
                losses.append(self.loss_value)
                counts.append(len(x))
                bar.update(i + 1)
        self.training = False
        train_loss = sum(v * n for v, n in zip(losses, counts, strict=True)) / sum(counts)
        row = {"epoch": self.epoch, "train_loss": train_loss}
        if self.has_valid:
            row.update(
                {
                    ("valid_loss" if k == "loss" else k): v
                    for k, v in self.validate().items()
                    if k != "split"
                }
            )
        elif self.metric_fns:
            row.update({k: v for k, v in self.validate().items() if k not in ("split", "loss")})
        row["time"] = _time.perf_counter() - began
        self.history.epochs.append(row)
        self._callback("after_epoch")

    def fit(
        self,
        epochs: int,
        stop: Callback | Sequence[Callback] | None = None,
        lr: float | None = None,
        target: float | None = None,
        schedule=None,
        schedule_per: str = "batch",
        keep_weights: int | None = None,
        sharpness: int | None = None,
    ) -> History:
        """Steps 6 and 7: repeat epochs until `epochs` or a stop rule; returns the History.

        Args:
            epochs: number of passes over the training data.
            stop: stop rules for this fit, e.g. ``EarlyStopping(patience=3)``.
            lr: change the learning rate from now on.
            target: stop once the monitored loss is at or below this value.
            schedule: a learning-rate schedule over this fit (as `descend` takes: a name,
                ``("cosine", {"warmup": 100})``, or ``lambda opt: torch.optim.lr_scheduler.X(
                opt, ...)``), stepped per batch or, with ``schedule_per="epoch"``, per epoch.
            keep_weights: keep the flat weights every k steps, and at the start and the end
                (``learn.weights``, ``learn.weights_at``), for `landscape`; the memory they
                take is checked first.
            sharpness: measure the Hessian's largest eigenvalue every k steps, and at the start
                and the end (``history["sharpness"]``, `plot_sharpness`).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise DescentError(f"epochs must be an integer >= 0, got {epochs!r}")
        if lr is not None:
            check_positive("lr", lr)
            for group in self.opt.param_groups:
                group["lr"] = lr
        extra = [stop] if isinstance(stop, Callback) else list(stop or [])
        if target is not None:
            extra.append(StopAtLoss(target))
        per_epoch = self.steps_per_epoch
        if schedule is not None:
            total = epochs * (per_epoch if schedule_per == "batch" else 1)
            extra.append(Schedule(schedules.resolve(schedule, total), schedule_per))
        if keep_weights is not None:
            keeper = KeepWeights(keep_weights)
            keeper.check(self, epochs * per_epoch)
            extra.append(keeper)
        if sharpness is not None:
            from .sharpness import Sharpness

            extra.append(Sharpness(sharpness))
        printer = []
        if self.verbose:
            seed_style = self.batch_size is None and not self.has_valid and not self.metric_fns
            printer = [PrintLosses() if seed_style else PrintTable()]
        self._active = sorted([*self.callbacks, *extra, *printer], key=lambda c: c.order)
        self.stop_reason = None
        if self.record_params and not self.history["params"]:
            self.history["params"].append(self._param_vector())
        try:
            with using_threads(self.threads):
                self._fit_epochs(epochs)
        except CancelFit as reason:
            self.stop_reason = str(reason)
            if self.verbose:
                print(self.stop_reason)
        finally:
            self.training = False
            self._callback("after_fit")
        return self.history

    def _fit_epochs(self, epochs: int) -> None:
        self._callback("before_fit")
        for _ in range(epochs):
            self.epoch += 1
            self.one_epoch()

    # ---- evaluation ------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch: 1 for full-batch descent, else the batches."""
        return 1 if self.batch_size is None else -(-len(self.x) // self.batch_size)

    @property
    def has_valid(self) -> bool:
        return self.x_valid is not None

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0].get("lr", math.nan))  # AliG sets its own steps

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and metrics on the validation split (the training data when there is none)."""
        split = "valid" if self.has_valid else "train"
        x, y = (self.x_valid, self.y_valid) if self.has_valid else (self.x, self.y)
        self.model.eval()
        size = max(self.batch_size or len(x), 4096)
        preds = torch.cat([self.predict(x[i : i + size]) for i in range(0, len(x), size)])
        out = {"loss": float(self.loss(preds, y))}
        for name, fn in zip(self.metric_names, self.metric_fns, strict=True):
            out[name] = float(fn(preds, y))
        out["split"] = split
        return out

    def params_at(self, step: int) -> torch.Tensor:
        """The flat parameter vector after `step` steps (needs `record_params`)."""
        saved = self.history["params"]
        if not saved:
            raise DescentError(
                "parameters were not recorded; create the Learner with record_params=True"
            )
        if not 0 <= step < len(saved):
            raise DescentError(f"step must be within 0..{len(saved) - 1}, got {step}")
        return saved[step]

    @torch.no_grad()
    def preds_at(self, step: int, x: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions the model made after `step` steps (the example's show_preds data)."""
        flat = self.params_at(step)
        names = [n for n, _ in self.model.named_parameters()]
        shapes = [p.shape for p in self.model.parameters()]
        chunks = torch.split(flat, [int(torch.Size(s).numel()) for s in shapes])
        state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return torch.func.functional_call(self.model, state, (self.x if x is None else x,))

    @property
    def weights(self) -> torch.Tensor:
        """The flat weights kept by ``fit(keep_weights=k)``, ``(K, P)``; their steps are
        `weights_at`."""
        if not self._kept:
            raise DescentError(
                "no weights were kept: fit with keep_weights=k to keep them every k steps"
            )
        return torch.stack(self._kept)

    def landscape(self, directions="pca", **kwargs):
        """The loss on a plane (or line) through the weights, with the kept path projected on
        it (`descentlab.training.landscape.landscape`)."""
        from .landscape import landscape

        return landscape(self, directions, **kwargs)

    def sharpness(self, data="train", **kwargs) -> float:
        """The largest eigenvalue of the loss's Hessian at the current weights, on the
        training data (`descentlab.training.sharpness.sharpness`)."""
        from .sharpness import sharpness

        return sharpness(self, data, **kwargs)

    def lr_find(self, start: float = 1e-7, end: float = 10.0, num: int = 100, from_start=True):
        """Exponential learning-rate sweep from the initial parameters (or, with
        ``from_start=False``, the current ones), leaving the learner as it was; see
        `descentlab.training.lr_find`."""
        from .lr_find import lr_find

        return lr_find(self, start=start, end=end, num=num, from_start=from_start)

    # ---- plumbing ---------------------------------------------------------------------------
    def _closure(self) -> torch.Tensor:
        # with gradients on: some optimizers (AliG) call it inside their no_grad step
        with torch.enable_grad():
            self.opt.zero_grad()
            loss = self.loss(self.predict(self._last_x), self._last_y)
            loss.backward()
        return loss

    def _batches(self):
        if self.batch_size is None:
            self._last_x, self._last_y = self.x, self.y
            yield None
            return
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.x), generator=gen)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            if self.plan.needs_closure:
                self._last_x, self._last_y = self.x[idx], self.y[idx]
            yield idx

    def _record_step(self) -> None:
        self.history["loss"].append(self.loss_value)
        self.history["lr"].append(self.lr)
        if self.record_params:
            self.history["params"].append(self._param_vector())

    def _param_vector(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).clone()

    def _callback(self, event: str) -> None:
        for cb in getattr(self, "_active", self.callbacks):
            method = getattr(cb, event, None)
            if method is not None:
                method(self)

    def plot_loss(self, **kwargs):
        """Training loss per step and validation loss per epoch (`plot.loss`)."""
        from .. import plot

        return plot.loss(self, **kwargs)

    def plot_sharpness(self, **kwargs):
        """The sharpness measured during fits against the stability limit 2/lr
        (`plot.sharpness`; fit with ``sharpness=k``)."""
        from .. import plot

        return plot.sharpness(self, **kwargs)

    def plot_preds(self, steps=(0, 1, 2, 3), **kwargs):
        """The data and the model's predictions after each of `steps` (`plot.preds`; needs
        ``record_params=True``)."""
        from .. import plot

        return plot.preds(self, steps, **kwargs)

    def _repr_html_(self) -> str:
        from ..plot import display

        return display.learner(self)

    def __repr__(self) -> str:
        return (
            f"<Learner {type(self.model).__name__} · {self.loss_name} · {self.plan.name} "
            f"lr={self.lr:g} · {len(self.x)} train / "
            f"{len(self.x_valid) if self.has_valid else 0} valid · {self.steps_done} steps>"
        )


def _as_module(model, params) -> nn.Module:
    if isinstance(model, nn.Module):
        if params is not None:
            raise DescentError("params= is for a plain function f(x, params); a Module has its own")
        return model
    if callable(model):
        if params is None:
            raise DescentError(
                "a function model f(x, params) needs params= (the number of parameters or a "
                "tensor of initial values)"
            )
        return FunctionModel(model, params)
    raise DescentError(f"model must be a torch.nn.Module or a function f(x, params), got {model!r}")


def _tensor(a, name: str) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(a)
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.float()
    if t.ndim == 0 or len(t) == 0:
        raise DescentError(f"{name} is empty; give at least one example")
    return t


def _split(data, valid, seed: int):
    if isinstance(data, Dataset):
        x, y = data.x, data.y
        if data.x_valid is not None:
            if valid is not None:
                raise DescentError(f"{data.name} has its own validation split; drop valid=")
            return (
                _tensor(x, "x"),
                _tensor(y, "y"),
                _tensor(data.x_valid, "x_valid"),
                _tensor(data.y_valid, "y_valid"),
            )
    else:
        try:
            x, y = data
        except (TypeError, ValueError):
            raise DescentError("data must be (x, y) or a Dataset") from None
    x, y = _tensor(x, "x"), _tensor(y, "y")
    if len(x) != len(y):
        raise DescentError(f"x has {len(x)} examples but y has {len(y)}")
    if valid is None:
        return x, y, None, None
    n = len(x)
    count = round(valid * n) if isinstance(valid, float) else valid
    if isinstance(valid, bool) or not (isinstance(valid, (int, float))) or not 0 < count < n:
        raise DescentError(
            f"valid must be a fraction in (0, 1) or a count in 1..{n - 1}, got {valid!r}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    v, t = order[:count], order[count:]
    return x[t], y[t], x[v], y[v]


def _batch_size(batch_size, n: int) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DescentError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return batch_size


def _check_fit(learn: Learner) -> None:
    """Run the model on two examples and check its output against the targets and the loss."""
    x, y = learn.x[:2], learn.y[:2]
    try:
        with torch.no_grad():
            out = learn.model(x)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        first = str(exc).splitlines()[0]
        raise DescentError(
            f"the model cannot take inputs of shape {tuple(learn.x.shape[1:])}: {first}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise DescentError(f"the model returned {type(out).__name__}, not a tensor")
    labels = torch.cat([learn.y, learn.y_valid]) if learn.has_valid else learn.y
    if learn.loss_fn is losses_.cross_entropy:
        if labels.is_floating_point():
            raise DescentError("cross_entropy needs integer class labels; y is floating point")
        classes = out.shape[-1] if out.ndim == 2 else 0
        if classes < 2:
            raise DescentError(
                f"cross_entropy needs (N, classes) outputs; the model gives {tuple(out.shape)}"
            )
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= classes:
            raise DescentError(
                f"labels run from {lo} to {hi} but the model outputs {classes} classes "
                f"(0..{classes - 1})"
            )
    elif learn.loss_fn is losses_.binary:
        if out.numel() != len(x):
            raise DescentError(
                f"binary loss needs one output per example; the model gives {tuple(out.shape)}"
            )
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise DescentError("binary loss needs labels 0 and 1")
    elif out.numel() != y.numel():
        raise DescentError(
            f"model output shape {tuple(out.shape)} does not match targets {tuple(y.shape)} for "
            f"{learn.loss_name}"
        )
    if not math.isfinite(float(learn.loss(out, y))):
        raise DescentError(
            "the loss of the initial model is not finite; check the data for nan/inf"
        )
