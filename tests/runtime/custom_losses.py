"""Custom losses and metrics for the tests, imported as ``tests.runtime.custom_losses:Name``
(allowed with ``allow_imports=["tests"]``)."""

from __future__ import annotations

import torch
import torchmetrics
from torch import Tensor, nn

__all__ = ["ScaledL1", "SignAgreement", "max_error"]


class ScaledL1(nn.Module):
    """``scale * mean(|output - target| * per_feature)``: a plain argument and a
    tensor argument (``per_feature``, given as a list in the spec)."""

    def __init__(self, scale: float = 1.0, per_feature: Tensor | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.per_feature = per_feature

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        diff = (input - target).abs()
        if self.per_feature is not None:
            diff = diff * self.per_feature
        return self.scale * diff.mean()


def max_error(output: Tensor, target: Tensor) -> Tensor:
    """The largest absolute error in the batch (a metric function)."""
    return (output - target).abs().max()


class SignAgreement(torchmetrics.Metric):
    """The fraction of elements whose output and target have the same sign."""

    higher_is_better = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("hits", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, output: Tensor, target: Tensor) -> None:
        self.hits += ((output > 0) == (target > 0)).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return self.hits / self.total
