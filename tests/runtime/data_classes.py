"""Dataset classes and data functions that take arguments from the spec, for the
tests of ``{function: ..., args: ...}`` sources (as `tests.runtime.data_classes:...`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = ["Pairs", "WithABadItem", "from_files"]


class Pairs(Dataset):
    """``n`` items ``(x, label)``, a tuple each, as torchvision's datasets give."""

    def __init__(self, n: int = 40, seed: int = 7, swap: bool = False) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=generator)
        self.label = (self.x.sum(dim=1) > 0).long()
        self.swap = swap

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.swap:
            return self.label[i], self.x[i]
        return self.x[i], self.label[i]


def from_files(files: list[str], scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Arrays of the torch.save files named (paths as the spec resolved them)."""
    parts = [torch.load(Path(f), weights_only=True) for f in files]
    return {
        "x": torch.cat([p["x"] for p in parts]) * scale,
        "label": torch.cat([p["label"] for p in parts]),
    }


class WithABadItem(Pairs):
    """Pairs whose item ``bad`` has an input of another shape."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad = bad

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, label = super().__getitem__(i)
        return (x[:4] if i == self.bad else x), label
