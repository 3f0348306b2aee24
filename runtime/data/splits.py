"""The seeded split of one source into training, validation and test samples, and
``split.json``, the record of it a run writes: which samples of the source were held
out, so they can be found again without nnspec."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import TrainError
from ..settings import Settings
from .samples import Samples, Split

__all__ = ["SPLIT_FILE", "fraction_split", "split_record", "write_split"]

SPLIT_FILE = "split.json"
SPLIT_FORMAT = 1


def fraction_split(
    samples: Samples,
    val_fraction: float | None,
    test_fraction: float | None,
    seed: int,
    settings: Settings,
) -> tuple[Samples, Tensor | None, Tensor | None]:
    """(train, val index, test index) of a source: ``torch.randperm(n)`` seeded by
    ``seed`` puts the validation samples last and the test samples before them;
    each index is in the source's order."""
    n = len(samples)
    n_val = max(1, round(n * val_fraction)) if val_fraction is not None else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction is not None else 0
    if n_val + n_test >= n:
        key = "test_fraction" if test_fraction is not None else "val_fraction"
        given = " and ".join(
            f"{name} {value}"
            for name, value in (
                ("val_fraction", val_fraction),
                ("test_fraction", test_fraction),
            )
            if value is not None
        )
        raise settings.error(
            ("data", key), f"{given} of {n} samples leave none to train on"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_index, _ = order[: n - n_val - n_test].sort()
    val_index = order[n - n_val :].sort()[0] if n_val else None
    test_index = order[n - n_val - n_test : n - n_val].sort()[0] if n_test else None
    return samples.subset(train_index), val_index, test_index


def held_out(
    index: Tensor | None, samples: Samples | None, key: str
) -> dict[str, Any] | None:
    """How split.json records a held-out split: the source's sample indices, or
    the key of the source it was read from."""
    if samples is None:
        return None
    if index is not None:
        return {"from": "data.source", "indices": index.tolist()}
    return {"from": key, "samples": len(samples)}


def split_record(split: Split, settings: Settings) -> dict[str, Any]:
    """The content of split.json."""
    return {
        "format": SPLIT_FORMAT,
        "seed": settings.train.seed,
        "train_samples": len(split.train),
        **split.held_out,
    }


def write_split(root: Path, split: Split, settings: Settings) -> None:
    """Write split.json into the run directory ``root``, atomically."""
    target = root / SPLIT_FILE
    partial = root / f".{SPLIT_FILE}.{os.getpid()}.partial"
    record = split_record(split, settings)
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items()]
    text = "{\n" + ",\n".join(lines) + "\n}\n"  # a key a line
    try:
        if target.is_symlink():
            raise TrainError(
                f"{target} is a symbolic link; nnspec does not write through links "
                "in a run directory"
            )
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        raise TrainError(f"cannot write {target}: {exc.strerror or exc}") from None
