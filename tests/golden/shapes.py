"""ShapesNet: PyTorch source compiled by nnspec from shapes.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class ShapesNet(nn.Module):
    """A small fully convolutional network giving each pixel a class of shape."""

    def __init__(self, *, classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, kernel_size=5, padding=4, dilation=2)
        self.relu_1 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, width, kernel_size=5, padding=8, dilation=4)
        self.relu_2 = nn.ReLU()
        self.head = nn.Conv2d(width, classes, kernel_size=1)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv1(image)  # shapes.yaml:15  (B, 16, 32, 32)
        x = self.relu(x)  # shapes.yaml:16  (B, 16, 32, 32)
        x = self.conv2(x)  # shapes.yaml:17  (B, 16, 32, 32)
        x = self.relu_1(x)  # shapes.yaml:18  (B, 16, 32, 32)
        x = self.conv3(x)  # shapes.yaml:19  (B, 16, 32, 32)
        x = self.relu_2(x)  # shapes.yaml:20  (B, 16, 32, 32)
        return {"logits": self.head(x)}  # shapes.yaml:21  (B, 4, 32, 32)
