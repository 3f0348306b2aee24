"""The transforms of an image source, written in the spec: a list of steps applied
in order to an image (float32, channels first, values in [0, 1]) and, where the
step is geometric, to its mask (int64 class indices, height x width) alike.

Each step is a small class with one interface: ``step(image, mask, train)`` returns
the new (image, mask), and ``step.size(height, width)`` the size it makes, so the
reader checks the declared input shape before any image is decoded. Random steps
(random_crop, horizontal_flip, vertical_flip) draw from torch's global generator,
which the loader seeds per batch (batches.py), and act on training samples only:
for validation and test a random crop is a center crop and a flip is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ...spec.train import TransformSpec

__all__ = ["Step", "Transforms", "transforms_of"]

Mask = Tensor | None


class Step(Protocol):
    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        """The image (C, H, W) and mask (H, W), transformed."""
        ...

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of this size has after the step; ValueError
        when the step cannot take it."""
        ...


def _pair(size: int | list[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


class Resize:
    def __init__(self, size: int | list[int]) -> None:
        self.height, self.width = _pair(size)

    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        size = (self.height, self.width)
        if tuple(image.shape[1:]) == size:
            return image, mask
        image = F.interpolate(
            image[None], size=size, mode="bilinear", antialias=True, align_corners=False
        )[0].clamp_(0, 1)
        if mask is not None:
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")
            mask = mask[0, 0].long()
        return image, mask

    def size(self, height: int, width: int) -> tuple[int, int]:
        return self.height, self.width


def _crop(image: Tensor, mask: Mask, top: int, left: int, h: int, w: int) -> tuple:
    image = image[:, top : top + h, left : left + w]
    if mask is not None:
        mask = mask[top : top + h, left : left + w]
    return image, mask


class CenterCrop:
    def __init__(self, size: int | list[int]) -> None:
        self.height, self.width = _pair(size)

    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        h, w = image.shape[1:]
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return _crop(image, mask, top, left, self.height, self.width)

    def size(self, height: int, width: int) -> tuple[int, int]:
        if height < self.height or width < self.width:
            raise ValueError(
                f"it is {height}x{width}, smaller than the crop "
                f"{self.height}x{self.width}"
            )
        return self.height, self.width


class RandomCrop(CenterCrop):
    def __init__(self, size: int | list[int], padding: int = 0) -> None:
        super().__init__(size)
        self.padding = padding

    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        if not train:
            return super().__call__(image, mask, train)
        p = self.padding
        if p:
            image = F.pad(image, (p, p, p, p))
            if mask is not None:
                mask = F.pad(mask, (p, p, p, p))
        h, w = image.shape[1:]
        top = int(torch.randint(0, h - self.height + 1, ()))
        left = int(torch.randint(0, w - self.width + 1, ()))
        return _crop(image, mask, top, left, self.height, self.width)


class Flip:
    def __init__(self, probability: float, dim: int) -> None:
        self.probability = probability
        self.dim = dim  # -1: left-right, -2: upside down

    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        if not train or float(torch.rand(())) >= self.probability:
            return image, mask
        image = image.flip(self.dim)
        return image, mask.flip(self.dim) if mask is not None else None

    def size(self, height: int, width: int) -> tuple[int, int]:
        return height, width


class Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        return (image - self.mean) / self.std, mask

    def size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def channels(self) -> int:
        return max(len(self.mean), len(self.std))


class Transforms:
    """The steps of an image source, in order."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    def __call__(self, image: Tensor, mask: Mask, train: bool) -> tuple[Tensor, Mask]:
        for step in self.steps:
            image, mask = step(image, mask, train)
        return image, mask

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of (height, width) ends with; ValueError naming the
        step (1-based) that cannot take it."""
        for k, step in enumerate(self.steps):
            try:
                height, width = step.size(height, width)
            except ValueError as exc:
                raise ValueError(f"{exc} (transforms step {k + 1})") from None
        return height, width


def transforms_of(specs: Sequence[TransformSpec]) -> Transforms:
    """The steps of the spec's ``transforms:`` (each checked to have one key)."""
    steps: list[Step] = []
    for spec in specs:
        if spec.resize is not None:
            steps.append(Resize(spec.resize))
        elif spec.center_crop is not None:
            steps.append(CenterCrop(spec.center_crop))
        elif spec.random_crop is not None:
            steps.append(RandomCrop(spec.random_crop, spec.padding or 0))
        elif spec.horizontal_flip is not None:
            steps.append(Flip(spec.horizontal_flip, -1))
        elif spec.vertical_flip is not None:
            steps.append(Flip(spec.vertical_flip, -2))
        elif spec.normalize is not None:
            steps.append(Normalize(spec.normalize.mean, spec.normalize.std))
    return Transforms(steps)


def step_keys(spec: TransformSpec) -> list[str]:
    """The keys a transforms step sets (exactly one of them, padding aside)."""
    return [
        key
        for key in type(spec).model_fields
        if key in spec.model_fields_set and getattr(spec, key) is not None
    ]
