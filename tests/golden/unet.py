# mypy: disable-error-code="no-any-return"
"""UNet: PyTorch source compiled by nnspec from unet.yaml.

Edit the spec and compile it again rather than editing this file.
"""

import torch
from torch import nn


class DoubleConv(nn.Module):
    """(convolution => BN => ReLU) * 2"""

    def __init__(self, *, in_channels: int, out: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or out
        self.conv2d = nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False)
        self.batch_norm2d = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv2d_1 = nn.Conv2d(mid, out, kernel_size=3, padding=1, bias=False)
        self.batch_norm2d_1 = nn.BatchNorm2d(out)
        self.relu_1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d(x)  # unet.yaml:19  (B, mid, in_height, in_width)
        x = self.batch_norm2d(x)  # unet.yaml:20  (B, mid, in_height, in_width)
        x = self.relu(x)  # unet.yaml:21  (B, mid, in_height, in_width)
        x = self.conv2d_1(x)  # unet.yaml:22  (B, out, in_height, in_width)
        x = self.batch_norm2d_1(x)  # unet.yaml:23  (B, out, in_height, in_width)
        return self.relu_1(x)  # unet.yaml:24  (B, out, in_height, in_width)


class Down(nn.Module):
    """Downscaling with maxpool, then a double convolution."""

    def __init__(self, *, in_channels: int, out: int) -> None:
        super().__init__()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2)
        self.conv = DoubleConv(in_channels=in_channels, out=out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # unet.yaml:29  (B, in_channels, in_height // 2, in_width // 2)
        x = self.max_pool2d(x)
        return self.conv(x)  # unet.yaml:30  (B, out, in_height // 2, in_width // 2)


class Up(nn.Module):
    """Upscaling, then a double convolution over the joined skip connection."""

    def __init__(self, *, x_channels: int, skip_channels: int, out: int) -> None:
        super().__init__()
        in_channels = skip_channels + x_channels
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels=in_channels, out=out, mid=in_channels // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # unet.yaml:36  (B, x_channels, x_height * 2, x_width * 2)
        # unet.yaml:37  (B, in_channels, skip_height, skip_width)
        x = torch.cat([skip, x], dim=1)
        return self.conv(x)  # unet.yaml:38  (B, out, skip_height, skip_width)


class OutConv(nn.Module):
    def __init__(self, *, in_channels: int, out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # unet.yaml:42  (B, out, in_height, in_width)


class UNet(nn.Module):
    """U-Net for semantic segmentation, bilinear upsampling."""

    def __init__(self, *, classes: int = 2, base: int = 64) -> None:
        super().__init__()
        self.inc = DoubleConv(in_channels=3, out=base)
        self.down1 = Down(in_channels=base, out=base * 2)
        self.down2 = Down(in_channels=base * 2, out=base * 4)
        self.down3 = Down(in_channels=base * 4, out=base * 8)
        self.down4 = Down(in_channels=base * 8, out=base * 8)
        self.up1 = Up(x_channels=base * 8, skip_channels=base * 8, out=base * 4)
        self.up2 = Up(x_channels=base * 4, skip_channels=base * 4, out=base * 2)
        self.up3 = Up(x_channels=base * 2, skip_channels=base * 2, out=base)
        self.up4 = Up(x_channels=base, skip_channels=base, out=base)
        self.outc = OutConv(in_channels=base, out=classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inc = self.inc(x)  # unet.yaml:44  (B, 64, 64, 64)
        down1 = self.down1(inc)  # unet.yaml:45  (B, 128, 32, 32)
        down2 = self.down2(down1)  # unet.yaml:46  (B, 256, 16, 16)
        down3 = self.down3(down2)  # unet.yaml:47  (B, 512, 8, 8)
        x = self.down4(down3)  # unet.yaml:48  (B, 512, 4, 4)
        x = self.up1(x, down3)  # unet.yaml:49  (B, 256, 8, 8)
        x = self.up2(x, down2)  # unet.yaml:50  (B, 128, 16, 16)
        x = self.up3(x, down1)  # unet.yaml:51  (B, 64, 32, 32)
        x = self.up4(x, inc)  # unet.yaml:52  (B, 64, 64, 64)
        return self.outc(x)  # unet.yaml:53  (B, 2, 64, 64)
