# mypy: disable-error-code="no-any-return"
"""LeNet: PyTorch source compiled by nnspec from lenet.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class LeNet(nn.Module):
    """LeNet-5 for 32x32 RGB images."""

    def __init__(self, *, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.relu = nn.ReLU()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu_1 = nn.ReLU()
        self.max_pool2d_1 = nn.MaxPool2d(kernel_size=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(400, 120)
        self.relu_2 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu_3 = nn.ReLU()
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # lenet.yaml:13  (B, 6, 28, 28)
        x = self.relu(x)  # lenet.yaml:14  (B, 6, 28, 28)
        x = self.max_pool2d(x)  # lenet.yaml:15  (B, 6, 14, 14)
        x = self.conv2(x)  # lenet.yaml:16  (B, 16, 10, 10)
        x = self.relu_1(x)  # lenet.yaml:17  (B, 16, 10, 10)
        x = self.max_pool2d_1(x)  # lenet.yaml:18  (B, 16, 5, 5)
        x = self.flatten(x)  # lenet.yaml:19  (B, 400)
        x = self.fc1(x)  # lenet.yaml:20  (B, 120)
        x = self.relu_2(x)  # lenet.yaml:21  (B, 120)
        x = self.fc2(x)  # lenet.yaml:22  (B, 84)
        x = self.relu_3(x)  # lenet.yaml:23  (B, 84)
        return self.fc3(x)  # lenet.yaml:24  (B, 10)
