"""Losses and metrics against torch.nn.functional and closed forms."""

import pytest
import torch
import torch.nn.functional as F

import descentlab as dl
from descentlab.training import losses

P = torch.tensor([1.0, -2.0, 3.5, 0.25])
T = torch.tensor([0.5, -1.0, 2.0, 0.0])


def test_regression_losses_match_torch():
    assert torch.allclose(losses.get("mse")(P, T), F.mse_loss(P, T))
    assert torch.allclose(losses.get("mae")(P, T), F.l1_loss(P, T))
    assert losses.get("l1") is losses.get("mae")
    assert torch.allclose(losses.get("rmse")(P, T), F.mse_loss(P, T).sqrt())


def test_column_predictions_compare_with_flat_targets():
    assert torch.allclose(losses.mse(P[:, None], T), F.mse_loss(P, T))


def test_cross_entropy_matches_torch():
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    assert torch.allclose(
        losses.get("cross_entropy")(logits, labels), F.cross_entropy(logits, labels)
    )


def test_binary_is_fastbooks_mnist_loss():
    preds = torch.tensor([[2.0], [-1.0], [0.5]])
    targets = torch.tensor([1, 0, 0])
    s = torch.sigmoid(preds[:, 0])
    expected = ((1 - s[0]) + s[1] + s[2]) / 3
    assert torch.allclose(losses.binary(preds, targets), expected)


def test_accuracy_multiclass_and_binary():
    logits = torch.tensor([[2.0, 0.1], [0.0, 1.0], [3.0, -1.0]])
    assert float(losses.accuracy(logits, torch.tensor([0, 1, 1]))) == pytest.approx(2 / 3)
    assert float(
        losses.accuracy(torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1, 0, 0]))
    ) == pytest.approx(2 / 3)


def test_mean_absolute_deviation_closed_form():
    x = torch.tensor([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])  # mean 5
    assert float(losses.mean_absolute_deviation(x)) == pytest.approx(
        (3 + 1 + 1 + 1 + 0 + 0 + 2 + 4) / 8
    )


def test_unknown_loss_suggests():
    with pytest.raises(dl.UnknownNameError, match="did you mean 'mse'"):
        losses.get("msee")
