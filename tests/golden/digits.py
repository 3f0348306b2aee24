"""DigitsNet: PyTorch source compiled by nnspec from digits.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class DigitsNet(nn.Module):
    """LeNet-style convolutional classifier for 8x8 handwritten digits."""

    def __init__(self, *, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width * 2, kernel_size=3, padding=1)
        self.relu_1 = nn.ReLU()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(width * 2 * 4 * 4, 128)
        self.relu_2 = nn.ReLU()
        self.dropout = nn.Dropout(p=0.25)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv1(image)  # digits.yaml:14  (B, 16, 8, 8)
        x = self.relu(x)  # digits.yaml:15  (B, 16, 8, 8)
        x = self.conv2(x)  # digits.yaml:16  (B, 32, 8, 8)
        x = self.relu_1(x)  # digits.yaml:17  (B, 32, 8, 8)
        x = self.max_pool2d(x)  # digits.yaml:18  (B, 32, 4, 4)
        x = self.flatten(x)  # digits.yaml:19  (B, 512)
        x = self.fc1(x)  # digits.yaml:20  (B, 128)
        x = self.relu_2(x)  # digits.yaml:21  (B, 128)
        x = self.dropout(x)  # digits.yaml:22  (B, 128)
        return {"logits": self.fc2(x)}  # digits.yaml:23  (B, 10)
