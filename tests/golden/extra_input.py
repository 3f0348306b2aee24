# mypy: disable-error-code="no-any-return"
"""ImageWithMetadata: PyTorch source compiled by nnspec from extra_input.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """3x3 convolution, batch norm, ReLU and 2x2 max pooling."""

    def __init__(self, *, in_channels: int, out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # extra_input.yaml:25  (B, out, in_height, in_width)
        x = self.bn(x)  # extra_input.yaml:26  (B, out, in_height, in_width)
        x = self.relu(x)  # extra_input.yaml:27  (B, out, in_height, in_width)
        # extra_input.yaml:28  (B, out, in_height // 2, in_width // 2)
        return self.pool(x)


class ImageWithMetadata(nn.Module):
    """Convolutional classifier that also reads a vector of per-image metadata."""

    def __init__(self, *, classes: int = 5, hidden: int = 64) -> None:
        super().__init__()
        self.stem = ConvBNReLU(in_channels=3, out=16)
        self.stage1 = ConvBNReLU(in_channels=16, out=32)
        self.pool = nn.AdaptiveAvgPool2d(output_size=1)
        self.features = nn.Flatten()
        self.fc1 = nn.Linear(40, hidden)
        self.relu = nn.ReLU()
        self.head = nn.Linear(hidden, classes)
        self.reset_parameters()
        # Frozen by the spec: these parameters do not train.
        self.stem.requires_grad_(False)

    def reset_parameters(self) -> None:
        """Initialise parameters by the spec's init rules."""
        for module in (self.stem.conv, self.stage1.conv):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.1)
        for module_1 in (self.fc1, self.head):
            nn.init.normal_(module_1.weight, mean=0.0, std=0.01)
            if module_1.bias is not None:
                nn.init.zeros_(module_1.bias)
        for module_2 in (self.stem.bn, self.stage1.bn):
            nn.init.ones_(module_2.weight)
            if module_2.bias is not None:
                nn.init.zeros_(module_2.bias)

    def forward(
        self, image: torch.Tensor, extra: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        x = self.stem(image)  # extra_input.yaml:30  (B, 16, 16, 16)
        x = self.stage1(x)  # extra_input.yaml:31  (B, 32, 8, 8)
        x = self.pool(x)  # extra_input.yaml:32  (B, 32, 1, 1)
        features = self.features(x)  # extra_input.yaml:33  (B, 32)
        x = torch.cat([features, extra], dim=1)  # extra_input.yaml:34  (B, 40)
        x = self.fc1(x)  # extra_input.yaml:35  (B, 64)
        x = self.relu(x)  # extra_input.yaml:36  (B, 64)
        # extra_input.yaml:37  (B, 5)
        return {"logits": self.head(x), "features": features}
