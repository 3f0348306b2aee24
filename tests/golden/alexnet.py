# mypy: disable-error-code="no-any-return"
"""AlexNet: PyTorch source compiled by nnspec from alexnet.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class Features(nn.Module):
    """Five convolutions with ReLU; max pooling after the 1st, 2nd and 5th."""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.conv2 = nn.Conv2d(64, 192, kernel_size=5, padding=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.conv3 = nn.Conv2d(192, 384, kernel_size=3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # alexnet.yaml:18  (B, 64, ?, ?)
        x = self.relu1(x)  # alexnet.yaml:19  (B, 64, ?, ?)
        x = self.pool1(x)  # alexnet.yaml:20  (B, 64, ?, ?)
        x = self.conv2(x)  # alexnet.yaml:21  (B, 192, ?, ?)
        x = self.relu2(x)  # alexnet.yaml:22  (B, 192, ?, ?)
        x = self.pool2(x)  # alexnet.yaml:23  (B, 192, ?, ?)
        x = self.conv3(x)  # alexnet.yaml:24  (B, 384, ?, ?)
        x = self.relu3(x)  # alexnet.yaml:25  (B, 384, ?, ?)
        x = self.conv4(x)  # alexnet.yaml:26  (B, 256, ?, ?)
        x = self.relu4(x)  # alexnet.yaml:27  (B, 256, ?, ?)
        x = self.conv5(x)  # alexnet.yaml:28  (B, 256, ?, ?)
        x = self.relu5(x)  # alexnet.yaml:29  (B, 256, ?, ?)
        return self.pool5(x)  # alexnet.yaml:30  (B, 256, ?, ?)


class Classifier(nn.Module):
    """Dropout, then three fully connected layers."""

    def __init__(self, *, in_features: int, classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.drop1 = nn.Dropout(p=dropout)
        self.fc1 = nn.Linear(in_features, 4096)
        self.relu1 = nn.ReLU(inplace=True)
        self.drop2 = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(4096, 4096)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc3 = nn.Linear(4096, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(x)  # alexnet.yaml:37  (B, in_features)
        x = self.fc1(x)  # alexnet.yaml:38  (B, 4096)
        x = self.relu1(x)  # alexnet.yaml:39  (B, 4096)
        x = self.drop2(x)  # alexnet.yaml:40  (B, 4096)
        x = self.fc2(x)  # alexnet.yaml:41  (B, 4096)
        x = self.relu2(x)  # alexnet.yaml:42  (B, 4096)
        return self.fc3(x)  # alexnet.yaml:43  (B, classes)


class AlexNet(nn.Module):
    """AlexNet image classifier (torchvision layout)."""

    def __init__(self, *, classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = Features(in_channels=3)
        self.avgpool = nn.AdaptiveAvgPool2d(output_size=(6, 6))
        self.classifier = Classifier(in_features=9216, classes=classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # alexnet.yaml:45  (B, 256, 6, 6)
        x = self.avgpool(x)  # alexnet.yaml:46  (B, 256, 6, 6)
        x = torch.flatten(x, start_dim=1)  # alexnet.yaml:47  (B, 9216)
        return self.classifier(x)  # alexnet.yaml:48  (B, 1000)
