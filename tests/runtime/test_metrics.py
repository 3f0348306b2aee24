"""Validation metrics against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from nnspec.runtime.metrics import METRICS

LOGITS = torch.tensor(
    [
        [2.0, 1.0, 0.0, -1.0, -2.0, -3.0],  # predicts 0
        [0.0, 3.0, 1.0, 0.0, 0.0, 0.0],  # predicts 1
        [1.0, 0.0, 0.5, 4.0, 0.0, 0.0],  # predicts 3
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # predicts 5; 0 ranks last
    ]
)
CLASSES = torch.tensor([0, 2, 3, 0])


def value(name: str, output: torch.Tensor, target: torch.Tensor) -> float:
    total, count = METRICS[name].score(output, target)
    return total.item() / count


def test_accuracy_counts_argmax_hits() -> None:
    assert value("accuracy", LOGITS, CLASSES) == 0.5  # rows 0 and 2
    one_hot = torch.nn.functional.one_hot(CLASSES, 6).float()
    assert value("accuracy", LOGITS, one_hot) == 0.5


def test_top5_accuracy_counts_targets_among_the_five_largest() -> None:
    # Row 3's class 0 has the smallest logit: the only miss.
    assert value("top5_accuracy", LOGITS, CLASSES) == 0.75


def test_accuracy_over_positions_counts_every_position() -> None:
    output = torch.zeros(1, 3, 2)  # (B, C, L)
    output[0, 2, 0] = 1.0  # position 0 predicts 2
    output[0, 1, 1] = 1.0  # position 1 predicts 1
    assert value("accuracy", output, torch.tensor([[2, 0]])) == 0.5


def test_binary_accuracy_thresholds_logits_at_zero() -> None:
    logits = torch.tensor([3.0, -1.0, 0.5, -0.2])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert value("binary_accuracy", logits, target) == 0.75


def test_regression_errors() -> None:
    output = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    target = torch.tensor([[1.0, 0.0], [4.0, 5.0]])
    assert value("mse", output, target) == pytest.approx((0 + 4 + 1 + 0) / 4)
    assert value("mae", output, target) == pytest.approx((0 + 2 + 1 + 0) / 4)


def test_only_accuracies_are_better_higher() -> None:
    higher = {name for name, m in METRICS.items() if m.higher_is_better}
    assert higher == {"accuracy", "top5_accuracy", "binary_accuracy"}
