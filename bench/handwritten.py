"""Hand-written equivalents of the bench specs, for the comparisons with generated code.

The examples' equivalents (LeNet, U-Net) live with the tests, in
tests/compiler/handwritten.py; these follow the same rule: modules registered in the
spec's order, so that weights copy over entry by entry.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Residual", "ResidualMLP"]


class Residual(nn.Module):
    """bench/specs/residual_mlp.yaml, block Residual."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width * 4)
        self.fc2 = nn.Linear(width * 4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    """bench/specs/residual_mlp.yaml."""

    def __init__(
        self, features: int = 128, width: int = 256, depth: int = 16, classes: int = 10
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(features, width)
        self.blocks = nn.ModuleList(Residual(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))
