"""WineNet: PyTorch source compiled by nnspec from wine.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class WineNet(nn.Module):
    """Two-layer classifier of three wine cultivars from 13 chemical measurements."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.BatchNorm1d(13)
        self.hidden = nn.Linear(13, 32)
        self.relu = nn.ReLU()
        self.head = nn.Linear(32, 3)

    def forward(self, measurements: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.scale(measurements)  # wine.yaml:11  (B, 13)
        x = self.hidden(x)  # wine.yaml:12  (B, 32)
        x = self.relu(x)  # wine.yaml:13  (B, 32)
        return {"logits": self.head(x)}  # wine.yaml:14  (B, 3)
