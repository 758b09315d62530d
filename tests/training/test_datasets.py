"""Datasets: the shipped ones, and the IDX / MedMNIST readers on files written here."""

import gzip

import numpy as np
import pytest
import torch

import descentlab as dl
from conftest import idx_bytes, write_mnist
from descentlab.training import datasets


def test_noisy_quadratic_is_the_seed_formula():
    time, speed = datasets.noisy_quadratic(seed=3)
    assert torch.equal(time, torch.arange(20).float())
    noise = speed - (0.5 * (time - 9.5) ** 2 + 1)
    gen = torch.Generator().manual_seed(3)
    assert torch.allclose(noise, torch.randn(20, generator=gen), atol=1e-5)
    assert torch.equal(datasets.noisy_quadratic(seed=3)[1], speed)


def test_digits_and_mnist_sample_shapes():
    d = datasets.digits()
    assert d.x.shape == (1797, 64) and d.x.max() <= 1 and d.n_classes == 10
    m = datasets.mnist_sample()
    assert (
        m.x.shape == (5000, 784)
        and m.x.dtype == torch.float32
        and m.x.min() >= 0
        and m.x.max() <= 1
    )
    assert torch.bincount(m.y).tolist() == [500] * 10


def test_three_vs_seven_labels_threes_as_one():
    full = datasets.mnist_sample()
    s = datasets.mnist_sample(three_vs_seven=True)
    assert len(s) == 1000 and int(s.y.sum()) == 500
    threes = full.x[full.y == 3]
    assert torch.equal(s.x[s.y == 1], threes)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_reads_raw_and_gz(tmp_path, gz):
    files = write_mnist(tmp_path, gz=gz)
    d = datasets.mnist_idx(tmp_path)
    assert d.x.shape == (12, 784) and d.x_valid.shape == (5, 784)
    np.testing.assert_allclose(
        d.x[3].numpy() * 255, files["train-images-idx3-ubyte"][3].reshape(-1), atol=1e-3
    )
    assert d.y.tolist() == files["train-labels-idx1-ubyte"].tolist()


def test_load_idx_other_types(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    (tmp_path / "a.idx").write_bytes(idx_bytes(a, 0x0C))
    assert np.array_equal(datasets.load_idx(tmp_path / "a.idx"), a)


def test_idx_errors(tmp_path):
    good = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    (tmp_path / "bad_magic").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(dl.LoadError, match="bad magic number"):
        datasets.load_idx(tmp_path / "bad_magic")
    (tmp_path / "short").write_bytes(good[:-100])
    with pytest.raises(dl.LoadError, match="truncated or corrupt"):
        datasets.load_idx(tmp_path / "short")
    (tmp_path / "head").write_bytes(good[:7])
    with pytest.raises(dl.LoadError, match="truncated IDX header"):
        datasets.load_idx(tmp_path / "head")
    (tmp_path / "x.gz").write_bytes(gzip.compress(good)[:20])
    with pytest.raises(dl.LoadError, match="gzip"):
        datasets.load_idx(tmp_path / "x.gz")
    with pytest.raises(dl.LoadError, match="no such file"):
        datasets.load_idx(tmp_path / "nope")
    with pytest.raises(dl.LoadError, match="lacks train-images"):
        datasets.mnist_idx(tmp_path)


def write_medmnist(path, rgb=False, n=(30, 10, 10), classes=4, **override):
    rng = np.random.default_rng(1)
    shape = (28, 28, 3) if rgb else (28, 28)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, classes, (k, 1), dtype=np.uint8)
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("rgb", [False, True])
def test_medmnist_uses_the_files_own_splits(tmp_path, rgb):
    arrays = write_medmnist(tmp_path / "m.npz", rgb=rgb)
    d = datasets.load_medmnist(tmp_path / "m.npz")
    features = 28 * 28 * (3 if rgb else 1)
    assert d.x.shape == (30, features) and d.x_valid.shape == (10, features)
    assert d.y.tolist() == arrays["train_labels"][:, 0].tolist()
    learn = dl.Learner(
        dl.models.MLP(features, 8, d.n_classes), d, loss="cross_entropy", verbose=False
    )
    assert learn.x_valid.shape[0] == 10


def test_medmnist_errors(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(dl.LoadError, match="lacks train_images"):
        datasets.load_medmnist(tmp_path / "other.npz")
    write_medmnist(tmp_path / "multi.npz", train_labels=np.zeros((30, 14), dtype=np.uint8))
    with pytest.raises(dl.LoadError, match="multi-label"):
        datasets.load_medmnist(tmp_path / "multi.npz")
    write_medmnist(tmp_path / "ok.npz")
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(dl.LoadError, match="not a readable"):
        datasets.load_medmnist(tmp_path / "cut.npz")
    write_medmnist(tmp_path / "mismatch.npz", val_labels=np.zeros((3, 1), dtype=np.uint8))
    with pytest.raises(dl.LoadError, match="10 images but 3 labels"):
        datasets.load_medmnist(tmp_path / "mismatch.npz")
