# mypy: disable-error-code="no-any-return"
"""SharedMLP: PyTorch source compiled by nnspec from shared_mlp.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class SharedMLP(nn.Module):
    """MLP with one hidden layer shared by two steps (weights tied)."""

    def __init__(self, *, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.fc_in = nn.Linear(32, width)
        self.relu = nn.ReLU()
        self.hidden = nn.Linear(width, width)
        self.relu_1 = nn.ReLU()
        self.relu_2 = nn.ReLU()
        self.fc_out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc_in(x)  # shared_mlp.yaml:14  (B, 64)
        x = self.relu(x)  # shared_mlp.yaml:15  (B, 64)
        x = self.hidden(x)  # shared_mlp.yaml:16  (B, 64)
        x = self.relu_1(x)  # shared_mlp.yaml:17  (B, 64)
        x = self.hidden(x)  # shared_mlp.yaml:18  (B, 64)
        x = self.relu_2(x)  # shared_mlp.yaml:19  (B, 64)
        return self.fc_out(x)  # shared_mlp.yaml:20  (B, 10)
