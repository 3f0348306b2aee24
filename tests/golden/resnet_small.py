# mypy: disable-error-code="no-any-return"
"""ResNetSmall: PyTorch source compiled by nnspec from resnet_small.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut; keeps the input's shape."""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, kernel_size=3, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            in_channels, in_channels, kernel_size=3, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)  # resnet_small.yaml:23  (B, in_channels, in_height, in_width)
        h = self.bn1(h)  # resnet_small.yaml:24  (B, in_channels, in_height, in_width)
        h = self.relu(h)  # resnet_small.yaml:25  (B, in_channels, in_height, in_width)
        h = self.conv2(h)  # resnet_small.yaml:26  (B, in_channels, in_height, in_width)
        h = self.bn2(h)  # resnet_small.yaml:27  (B, in_channels, in_height, in_width)
        # resnet_small.yaml:28  (B, in_channels, in_height, in_width)
        h = torch.add(h, x)
        # resnet_small.yaml:29  (B, in_channels, in_height, in_width)
        return self.relu(h)


class Projection(nn.Module):
    """Strided 1x1 convolution and batch norm, for a shortcut that changes shape."""

    def __init__(self, *, in_channels: int, out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out, kernel_size=1, stride=stride, bias=False
        )
        self.bn = nn.BatchNorm2d(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # resnet_small.yaml:36  (B, out, ?, ?)
        return self.bn(x)  # resnet_small.yaml:37  (B, out, ?, ?)


class DownBlock(nn.Module):
    """A basic block that changes the width and resolution; the shortcut is
    projected.
    """

    def __init__(self, *, in_channels: int, out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = Projection(in_channels=in_channels, out=out, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)  # resnet_small.yaml:44  (B, out, ?, ?)
        h = self.bn1(h)  # resnet_small.yaml:45  (B, out, ?, ?)
        h = self.relu(h)  # resnet_small.yaml:46  (B, out, ?, ?)
        h = self.conv2(h)  # resnet_small.yaml:47  (B, out, ?, ?)
        h = self.bn2(h)  # resnet_small.yaml:48  (B, out, ?, ?)
        downsample = self.downsample(x)  # resnet_small.yaml:49  (B, out, ?, ?)
        h = torch.add(h, downsample)  # resnet_small.yaml:50  (B, out, ?, ?)
        return self.relu(h)  # resnet_small.yaml:51  (B, out, ?, ?)


class ResNetSmall(nn.Module):
    """Small ResNet for 32x32 images; three stages of basic blocks."""

    def __init__(
        self, *, classes: int = 10, width: int = 16, drop: float = 0.2
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(
            BasicBlock(in_channels=width), BasicBlock(in_channels=width)
        )
        self.down2 = DownBlock(in_channels=width, out=width * 2)
        self.layer2 = nn.Sequential(BasicBlock(in_channels=width * 2))
        self.down3 = DownBlock(in_channels=width * 2, out=width * 4)
        self.layer3 = nn.Sequential(BasicBlock(in_channels=width * 4))
        self.avgpool = nn.AdaptiveAvgPool2d(output_size=1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=drop)
        self.embed = nn.Linear(width * 4, width * 4)
        self.relu_1 = nn.ReLU()
        self.dropout_1 = nn.Dropout(p=drop)
        self.fc = nn.Linear(width * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # resnet_small.yaml:54  (B, 16, 32, 32)
        x = self.bn1(x)  # resnet_small.yaml:55  (B, 16, 32, 32)
        x = self.relu(x)  # resnet_small.yaml:56  (B, 16, 32, 32)
        x = self.layer1(x)  # resnet_small.yaml:58  (B, 16, 32, 32)
        x = self.down2(x)  # resnet_small.yaml:59  (B, 32, 16, 16)
        x = self.layer2(x)  # resnet_small.yaml:60  (B, 32, 16, 16)
        x = self.down3(x)  # resnet_small.yaml:61  (B, 64, 8, 8)
        x = self.layer3(x)  # resnet_small.yaml:62  (B, 64, 8, 8)
        x = self.avgpool(x)  # resnet_small.yaml:64  (B, 64, 1, 1)
        x = self.flatten(x)  # resnet_small.yaml:65  (B, 64)
        x = self.dropout(x)  # resnet_small.yaml:66  (B, 64)
        x = self.embed(x)  # resnet_small.yaml:67  (B, 64)
        x = self.relu_1(x)  # resnet_small.yaml:68  (B, 64)
        x = self.dropout_1(x)  # resnet_small.yaml:69  (B, 64)
        return self.fc(x)  # resnet_small.yaml:70  (B, 10)
