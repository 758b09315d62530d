"""The seven-step training loop: `Learner`, losses, small models, callbacks, LR finder."""

from . import losses, models
from .callbacks import Callback, CancelFit, EarlyStopping, KeepWeights, StopAtLoss
from .landscape import Landscape, landscape
from .learner import History, Learner
from .lr_find import LRFind, lr_find, lr_sweep

__all__ = [
    "Callback",
    "CancelFit",
    "EarlyStopping",
    "History",
    "KeepWeights",
    "LRFind",
    "Landscape",
    "Learner",
    "StopAtLoss",
    "landscape",
    "losses",
    "lr_find",
    "lr_sweep",
    "models",
]
