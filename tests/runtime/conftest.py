"""Small specs and data for the runtime tests: a few steps of a tiny network each."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

TINY_MODEL = """\
nnspec: 1
name: Tiny
params:
  width: 16
inputs:
  x: [6]
layers:
  - {op: Linear, name: hidden, out_features: "${width}"}
  - ReLU
  - {op: Dropout, p: 0.2}
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head}
"""

TINY_TRAIN = """\
train:
  data:
    source: {pt: data.pt}
    batch_size: 8
    val_fraction: 0.1
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  metrics: {logits: [accuracy]}
  optimizer: {op: AdamW, lr: 0.01}
  steps: 12
  log_every: 1
"""


def write_data(path: Path, n: int = 100, seed: int = 0) -> Path:
    """A learnable 3-class problem: the label is the argmax of a fixed projection."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    w = torch.randn(6, 3, generator=torch.Generator().manual_seed(123))
    torch.save({"x": x, "label": (x @ w).argmax(dim=1)}, path)
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write the tiny spec (with a train section, or `train` given) and its data."""

    def make(train: str = TINY_TRAIN, model: str = TINY_MODEL, n: int = 100) -> Path:
        write_data(tmp_path / "data.pt", n)
        spec = tmp_path / "tiny.yaml"
        spec.write_text(model + textwrap.dedent(train), encoding="utf-8")
        return spec

    return make


def records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> logged training loss."""
    return {r["step"]: r["loss"] for r in records(run_dir) if "loss" in r}
