"""Validation metrics, by name: each sums a score over a batch without a host sync."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

__all__ = ["METRICS", "Metric"]


@dataclass(frozen=True)
class Metric:
    """A metric: the sum of its score over a batch and the number of scored items.

    The value over a validation set is the sums added up, divided by the counts.
    """

    name: str
    higher_is_better: bool
    score: Callable[[Tensor, Tensor], tuple[Tensor, int]]
    doc: str


def _class_targets(output: Tensor, target: Tensor) -> Tensor:
    """Class indices from index targets, or from one-hot/soft targets shaped like output."""
    if target.is_floating_point() and target.shape == output.shape:
        return target.argmax(dim=1)
    return target


def _accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    target = _class_targets(output, target)
    return (output.argmax(dim=1) == target).sum(), target.numel()


def _top5_accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    target = _class_targets(output, target)
    k = min(5, output.shape[1])
    top = output.topk(k, dim=1).indices  # (B, k, ...)
    hits = (top == target.unsqueeze(1)).any(dim=1)
    return hits.sum(), target.numel()


def _binary_accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return ((output > 0) == (target > 0.5)).sum(), target.numel()


def _mse(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    diff = output.float() - target.float()
    return (diff * diff).sum(), diff.numel()


def _mae(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return (output.float() - target.float()).abs().sum(), output.numel()


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric(
            "accuracy",
            True,
            _accuracy,
            "argmax over dim 1 equals the class index (or the argmax of one-hot targets)",
        ),
        Metric("top5_accuracy", True, _top5_accuracy, "the class is among the top 5"),
        Metric(
            "binary_accuracy",
            True,
            _binary_accuracy,
            "logit > 0 agrees with target > 0.5 (for BCEWithLogitsLoss)",
        ),
        Metric("mse", False, _mse, "mean squared error"),
        Metric("mae", False, _mae, "mean absolute error"),
    ]
}
