"""The reference implementations the zoo's specs must match, one entry per zoo name.

Each :class:`Reference` builds its module two ways: :meth:`Reference.full`, the published
architecture at full size on the meta device (keys, shapes and parameter counts, no memory
and no time), and :meth:`Reference.small`, on the CPU at a size whose forward and backward
take milliseconds (outputs and train steps). ``small_kwargs`` are the reference's own
constructor arguments for the small build, so a zoo test builds its spec with the matching
params; ``small(**overrides)`` changes them.

torchvision's models come from torchvision itself (see ``torchvision_models.py``), GPT-2
and BERT from transformers (built from their configs, never downloaded), the U-Net from
the hand-written one below. Where torchvision is not installed, ResNet-18 and -50 are
built from the hand-written ResNet below, under torchvision's module names (checked against
torchvision itself where it is installed); the other torchvision references skip. Built
and counted with torchvision 0.28.0 and transformers
5.24.0 on torch 2.13.0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tests.zoo.torchvision_models import require_torchvision, torchvision_models

__all__ = ["HAND_WRITTEN", "REFERENCES", "Reference", "ResNet", "UNet"]


@dataclass(frozen=True)
class Reference:
    """One zoo name's reference: how to build it, what it takes, what it must count."""

    name: str
    source: str  # what it is, in the words of the library it comes from
    # The full-size constructor; keyword arguments change it.
    build: Callable[..., nn.Module]
    parameters: int  # of the full-size module, tied parameters counted once
    keys: int  # state_dict entries of the full-size module
    input_names: tuple[str, ...]
    make_inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]  # for small()
    small_kwargs: dict[str, Any] = field(default_factory=dict)
    # Output name ("" for a bare tensor) -> shape, of small() on small_inputs().
    small_outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def full(self, **kwargs: Any) -> nn.Module:
        """The full-size module on the meta device."""
        with torch.device("meta"):
            return self.build(**kwargs)

    def small(self, **overrides: Any) -> nn.Module:
        """The small module on the CPU (``small_kwargs`` changed by ``overrides``)."""
        with torch.device("cpu"):
            return self.build(**{**self.small_kwargs, **overrides})

    def small_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Inputs for small(), in the order of ``input_names``, drawn from ``seed``."""
        return self.make_inputs(torch.Generator().manual_seed(seed))


# torchvision ------------------------------------------------------------------------------


def _torchvision(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        models = torchvision_models()
        if models is None and name in HAND_WRITTEN:
            return HAND_WRITTEN[name](**kwargs)
        return getattr(require_torchvision(), name)(weights=None, **kwargs)

    build.__name__ = name
    return build


# vit_b_16's configuration: the small ViT changes its sizes, which vit_b_16() keeps fixed.
VIT_B_16 = {
    "image_size": 224,
    "patch_size": 16,
    "num_layers": 12,
    "num_heads": 12,
    "hidden_dim": 768,
    "mlp_dim": 3072,
}


def _vision_transformer(**kwargs: Any) -> nn.Module:
    models = require_torchvision()
    return models.VisionTransformer(**{**VIT_B_16, **kwargs})


def _images(size: int) -> Callable[[torch.Generator], tuple[torch.Tensor, ...]]:
    def make(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randn(2, 3, size, size, generator=generator),)

    return make


def _vision(name: str, parameters: int, keys: int, **extra: Any) -> Reference:
    return Reference(
        name=name,
        source=f"torchvision 0.28.0: torchvision.models.{name}(weights=None)",
        build=_torchvision(name),
        parameters=parameters,
        keys=keys,
        input_names=("x",),
        make_inputs=_images(32),
        small_kwargs={"num_classes": 10},
        small_outputs={"": (2, 10)},
        **extra,
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the shortcut (ResNet-18 and -34)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 down, 3x3 (carrying the stride), 1x1 up to four times the width (ResNet-50)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet (He et al., 2015) under torchvision's module names, for where it is absent."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, 64, layers[0], 1)
        self.layer2 = self._stage(block, 128, layers[1], 2)
        self.layer3 = self._stage(block, 256, layers[2], 2)
        self.layer4 = self._stage(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _stage(
        self,
        block: type[BasicBlock | Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
    ) -> nn.Sequential:
        width = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != width:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, width, 1, stride, bias=False),
                nn.BatchNorm2d(width),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = width
        stage += [block(width, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


HAND_WRITTEN: dict[str, Callable[..., nn.Module]] = {
    "resnet18": lambda **kwargs: ResNet(BasicBlock, [2, 2, 2, 2], **kwargs),
    "resnet50": lambda **kwargs: ResNet(Bottleneck, [3, 4, 6, 3], **kwargs),
}


# transformers -----------------------------------------------------------------------------


def _transformers() -> Any:
    """transformers, or skip the calling test when it is not installed."""
    import pytest

    # transformers imports torchvision when it is installed: import that one tolerantly first.
    torchvision_models()
    return pytest.importorskip("transformers")


def _gpt2(**kwargs: Any) -> nn.Module:
    hf = _transformers()
    return hf.GPT2LMHeadModel(hf.GPT2Config(**kwargs))


def _bert(**kwargs: Any) -> nn.Module:
    hf = _transformers()
    return hf.BertModel(hf.BertConfig(**kwargs))


SMALL_VOCAB = 1000
SMALL_TOKENS = 16


def _token_ids(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, SMALL_VOCAB, (2, SMALL_TOKENS), generator=generator),)


def _bert_inputs(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    (input_ids,) = _token_ids(generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, SMALL_TOKENS - 5 :] = 0  # the second sequence is padded
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, SMALL_TOKENS // 2 :] = 1  # two segments
    return input_ids, attention_mask, token_type_ids


# The U-Net --------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, mid_channels: int | None = None
    ):
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Halve the resolution, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2), DoubleConv(in_channels, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Double the resolution, pad to the skip connection's size, concatenate, DoubleConv."""

    def __init__(
        self, in_channels: int, out_channels: int, bilinear: bool = True
    ) -> None:
        super().__init__()
        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(
                in_channels, in_channels // 2, kernel_size=2, stride=2
            )
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        dy = x2.size(2) - x1.size(2)
        dx = x2.size(3) - x1.size(3)
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    """A 1x1 convolution to the classes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015), written by hand as it is usually written in PyTorch."""

    def __init__(
        self, n_channels: int = 3, n_classes: int = 2, bilinear: bool = True
    ) -> None:
        super().__init__()
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, 64)
        self.down1 = Down(64, 128)
        self.down2 = Down(128, 256)
        self.down3 = Down(256, 512)
        self.down4 = Down(512, 1024 // factor)
        self.up1 = Up(1024, 512 // factor, bilinear)
        self.up2 = Up(512, 256 // factor, bilinear)
        self.up3 = Up(256, 128 // factor, bilinear)
        self.up4 = Up(128, 64, bilinear)
        self.outc = OutConv(64, n_classes)

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


def _unet_inputs(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    # 36 = 2 * 18: the third pooling floors 9 to 4, so Up pads 8 back to 9.
    return (torch.randn(1, 3, 36, 36, generator=generator),)


# The registry -----------------------------------------------------------------------------

REFERENCES: dict[str, Reference] = {
    ref.name: ref
    for ref in [
        _vision("resnet18", 11_689_512, 122),
        _vision("resnet50", 25_557_032, 320),
        _vision("mobilenet_v2", 3_504_872, 314),
        _vision("efficientnet_b0", 5_288_548, 360),
        _vision("densenet121", 7_978_856, 727),
        _vision("convnext_tiny", 28_589_128, 182),
        Reference(
            name="vit_b_16",
            source=(
                "torchvision 0.28.0: torchvision.models.vit_b_16(weights=None), built as "
                "VisionTransformer(**VIT_B_16) so that the small one can change its sizes"
            ),
            build=_vision_transformer,
            parameters=86_567_656,
            keys=152,
            input_names=("x",),
            make_inputs=_images(224),
            small_kwargs={
                "num_layers": 2,
                "num_heads": 2,
                "hidden_dim": 64,
                "mlp_dim": 128,
                "num_classes": 10,
            },
            small_outputs={"": (2, 10)},
        ),
        Reference(
            name="gpt2",
            source="transformers 5.24.0: GPT2LMHeadModel(GPT2Config(**kwargs))",
            build=_gpt2,
            parameters=124_439_808,
            keys=149,
            input_names=("input_ids",),
            make_inputs=_token_ids,
            small_kwargs={
                "n_layer": 2,
                "n_embd": 64,
                "n_head": 2,
                "n_positions": 128,
                "vocab_size": SMALL_VOCAB,
                # Not the architecture: the default 50256 lies outside the small vocabulary.
                "bos_token_id": SMALL_VOCAB - 1,
                "eos_token_id": SMALL_VOCAB - 1,
            },
            small_outputs={"logits": (2, SMALL_TOKENS, SMALL_VOCAB)},
        ),
        Reference(
            name="bert_base",
            source="transformers 5.24.0: BertModel(BertConfig(**kwargs))",
            build=_bert,
            parameters=109_482_240,
            keys=199,
            input_names=("input_ids", "attention_mask", "token_type_ids"),
            make_inputs=_bert_inputs,
            small_kwargs={
                "num_hidden_layers": 2,
                "hidden_size": 64,
                "num_attention_heads": 2,
                "intermediate_size": 128,
                "max_position_embeddings": 128,
                "vocab_size": SMALL_VOCAB,
            },
            small_outputs={
                "last_hidden_state": (2, SMALL_TOKENS, 64),
                "pooler_output": (2, 64),
            },
        ),
        Reference(
            name="unet",
            source="tests/zoo/references.py: UNet(n_channels=3, n_classes=2, bilinear=True)",
            build=UNet,
            parameters=17_263_042,
            keys=110,
            input_names=("x",),
            make_inputs=_unet_inputs,
            small_kwargs={"n_classes": 2},
            small_outputs={"": (1, 2, 36, 36)},
        ),
    ]
}
