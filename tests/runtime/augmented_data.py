"""Data functions with random augmentation in ``__getitem__``, for the tests of
seeded Dataset items (named as `tests.runtime.augmented_data:...` in specs)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["Noisy", "noisy"]


class Noisy(Dataset):
    """40 samples; each item's input gets fresh noise from the global RNG."""

    def __init__(self, n: int = 40) -> None:
        generator = torch.Generator().manual_seed(3)
        self.x = torch.randn(n, 6, generator=generator)
        self.label = (self.x.sum(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        noise = torch.rand(6)  # random augmentation
        return {"x": self.x[i] + noise, "label": self.label[i]}


def noisy() -> tuple[Noisy, None]:
    return Noisy(), None
