"""Hand-written PyTorch equivalents of the specs in examples/.

Each class is written the way one writes such a model by hand: attribute names differ
from the spec's where the usual PyTorch idiom differs, but the modules are registered in
the same order, so the two state_dicts line up entry by entry.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AlexNet",
    "ImageWithMetadata",
    "LeNet",
    "ResNetSmall",
    "SharedMLP",
    "TwoHeads",
    "UNet",
]


class LeNet(nn.Module):
    """examples/lenet.yaml (and section 1 of the language description)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class DigitsNet(nn.Module):
    """examples/digits.yaml: a LeNet-style classifier for 8x8 digits."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width * 2, 3, padding=1)
        self.fc1 = nn.Linear(width * 2 * 4 * 4, 128)
        self.dropout = nn.Dropout(0.25)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.relu(self.conv2(torch.relu(self.conv1(image))))
        x = torch.flatten(torch.max_pool2d(x, 2), 1)
        x = self.dropout(torch.relu(self.fc1(x)))
        return {"logits": self.fc2(x)}


class AlexNet(nn.Module):
    """examples/alexnet.yaml: torchvision's AlexNet layout."""

    def __init__(self, classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class DoubleConv(nn.Module):
    """(convolution => BN => ReLU) * 2"""

    def __init__(self, in_channels: int, out_channels: int, mid: int | None = None):
        super().__init__()
        mid = mid or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2), DoubleConv(in_channels, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        return self.conv(torch.cat([x2, x1], dim=1))


class UNet(nn.Module):
    """examples/unet.yaml: U-Net with bilinear upsampling."""

    def __init__(self, channels: int = 3, classes: int = 2, base: int = 64) -> None:
        super().__init__()
        self.inc = DoubleConv(channels, base)
        self.down1 = Down(base, base * 2)
        self.down2 = Down(base * 2, base * 4)
        self.down3 = Down(base * 4, base * 8)
        self.down4 = Down(base * 8, base * 8)
        self.up1 = Up(base * 16, base * 4)
        self.up2 = Up(base * 8, base * 2)
        self.up3 = Up(base * 4, base)
        self.up4 = Up(base * 2, base)
        self.outc = nn.Conv2d(base, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


class SharedMLP(nn.Module):
    """examples/shared_mlp.yaml: the hidden layer is applied twice."""

    def __init__(self, features: int = 32, width: int = 64, classes: int = 10):
        super().__init__()
        self.fc_in = nn.Linear(features, width)
        self.hidden = nn.Linear(width, width)
        self.fc_out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc_in(x))
        x = torch.relu(self.hidden(x))
        x = torch.relu(self.hidden(x))
        return self.fc_out(x)


class BasicBlock(nn.Module):
    """A torchvision-style basic block; ``downsample`` projects the shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        project: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if project
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetSmall(nn.Module):
    """examples/resnet_small.yaml."""

    def __init__(
        self, classes: int = 10, width: int = 16, depth: int = 2, drop: float = 0.2
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(*(BasicBlock(width, width) for _ in range(depth)))
        self.down2 = BasicBlock(width, 2 * width, stride=2, project=True)
        self.layer2 = nn.Sequential(
            *(BasicBlock(2 * width, 2 * width) for _ in range(depth - 1))
        )
        self.down3 = BasicBlock(2 * width, 4 * width, stride=2, project=True)
        self.layer3 = nn.Sequential(
            *(BasicBlock(4 * width, 4 * width) for _ in range(depth - 1))
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(drop),
            nn.Linear(4 * width, 4 * width),
            nn.ReLU(),
            nn.Dropout(drop),
            nn.Linear(4 * width, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.down3(self.layer2(self.down2(self.layer1(x)))))
        return self.head(self.avgpool(x))


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )


class ImageWithMetadata(nn.Module):
    """examples/extra_input.yaml: image features joined with a metadata vector."""

    def __init__(self, extra: int = 8, hidden: int = 64, classes: int = 5) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, 16)
        self.stage1 = ConvBNReLU(16, 32)
        self.fc1 = nn.Linear(32 + extra, hidden)
        self.head = nn.Linear(hidden, classes)
        self.reset_parameters()
        self.stem.requires_grad_(False)

    def reset_parameters(self) -> None:
        for conv in (self.stem[0], self.stage1[0]):
            nn.init.xavier_normal_(conv.weight)
            nn.init.constant_(conv.bias, 0.1)
        for linear in (self.fc1, self.head):
            nn.init.normal_(linear.weight, 0.0, 0.01)
            nn.init.zeros_(linear.bias)
        for norm in (self.stem[1], self.stage1[1]):
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)

    def forward(
        self, image: torch.Tensor, extra: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        x = self.stage1(self.stem(image))
        features = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        x = torch.relu(self.fc1(torch.cat([features, extra], dim=1)))
        return {"logits": self.head(x), "features": features}


class TwoHeads(nn.Module):
    """Section 4 of the language description: a skip connection and tied weights."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(512, 256)
        self.shared = nn.Linear(256, 256)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(257, 10)

    def forward(self, x: torch.Tensor, extra: torch.Tensor) -> dict[str, torch.Tensor]:
        trunk = self.trunk(x)
        h = self.shared(torch.relu(trunk)) + trunk
        h = self.dropout(self.shared(h))
        logits = self.head(torch.cat([h, extra], dim=1))
        return {"logits": logits, "features": trunk}


class WineNet(nn.Module):
    """examples/wine.yaml: a two-layer classifier of 13 measurements."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.BatchNorm1d(13)
        self.hidden = nn.Linear(13, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, measurements: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.relu(self.hidden(self.scale(measurements)))
        return {"logits": self.head(x)}


class ShapesNet(nn.Module):
    """examples/shapes.yaml: dilated convolutions, a class score per pixel."""

    def __init__(self, classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 5, padding=4, dilation=2)
        self.conv3 = nn.Conv2d(width, width, 5, padding=8, dilation=4)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.relu(self.conv1(image))
        x = torch.relu(self.conv3(torch.relu(self.conv2(x))))
        return {"logits": self.head(x)}
