"""A custom op for the tests: records where a tensor made in forward, without a
device, is made while nnspec works out shapes."""

from __future__ import annotations

import torch
from torch import nn

SEEN: list[str] = []


class Probe(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN.append(torch.zeros(1).device.type)
        return x
