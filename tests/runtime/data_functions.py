"""Data functions that specs of the runtime tests name as `tests.runtime.data_functions:...`."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["DictDataset", "as_dataset", "as_tensors", "not_a_pair"]


def _arrays(n: int = 40) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(n, 6, generator=generator)
    return {"x": x, "label": (x.sum(dim=1) > 0).long() + (x[:, 0] > 1).long()}


class DictDataset(Dataset):
    """Items are mappings of name -> tensor, as the runtime expects of a Dataset."""

    def __init__(self, arrays: dict[str, torch.Tensor]) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["x"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.arrays.items()}


def as_tensors() -> tuple[dict[str, torch.Tensor], None]:
    return _arrays(), None


def as_dataset() -> tuple[DictDataset, DictDataset]:
    arrays = _arrays(48)
    train = {k: v[:40] for k, v in arrays.items()}
    val = {k: v[40:] for k, v in arrays.items()}
    return DictDataset(train), DictDataset(val)


def not_a_pair() -> dict[str, torch.Tensor]:
    return _arrays()
