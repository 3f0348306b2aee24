"""Data functions with a flaw the loop must catch, named in the security specs."""

from __future__ import annotations

import torch

from tests.runtime.data_functions import DictDataset

__all__ = ["late_bad_label"]


def late_bad_label() -> tuple[DictDataset, None]:
    """40 samples of 3 classes, but sample 20's label is 7."""
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    label = (x.sum(dim=1) > 0).long()
    label[20] = 7
    return DictDataset({"x": x, "label": label}), None
