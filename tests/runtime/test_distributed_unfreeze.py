"""``unfreeze`` under DDP (two gloo processes on CPU): the model is wrapped anew when
parameters start training, so their gradients are averaged like the others'."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from nnspec.runtime import Trainer, load_checkpoint
from tests.runtime.conftest import write_data
from tests.runtime.test_distributed import (
    TWO,
    assert_same_losses,
    launch,
    nproc,
    succeeded,
)

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not torch.distributed.is_available(),
    reason="torch.distributed with gloo",
)

SPEC = """\
nnspec: 1
name: Tiny
inputs:
  x: [6]
layers:
  - {op: Linear, name: hidden, out_features: 16}
  - ReLU
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head}
freeze: [hidden]
train:
  data: {source: {pt: data.pt}, batch_size: 8, val_fraction: 0.1}
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  optimizer: {op: SGD, lr: 0.1}
  steps: 14
  log_every: 1
  unfreeze: [{at_epoch: 2, match: hidden}]
"""
# 90 training samples, a global batch of 8: 11 steps an epoch, then 3 unfrozen.


def test_ddp_unfreezes_like_one_process(tmp_path: Path) -> None:
    write_data(tmp_path / "data.pt")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    Trainer(spec, tmp_path / "single", progress=False).fit()
    succeeded(launch(nproc("tiny.yaml", "--out", "ddp", *TWO), tmp_path))
    assert_same_losses(tmp_path / "ddp", tmp_path / "single", range(1, 15))
    one = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")["model"]
    two = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["model"]
    assert torch.allclose(two["hidden.weight"], one["hidden.weight"], atol=1e-5)


def test_fsdp_refuses_unfreeze_saying_why(tmp_path: Path) -> None:
    write_data(tmp_path / "data.pt")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC + "  strategy: fsdp\n", encoding="utf-8")
    result = launch(nproc("tiny.yaml", "--out", "fsdp", *TWO), tmp_path)
    # Every rank finds it as it builds the model; the launcher reports the run failed.
    assert result.returncode != 0, result.stdout + result.stderr
    line = SPEC.splitlines().index("  unfreeze: [{at_epoch: 2, match: hidden}]") + 1
    assert (
        f"tiny.yaml:{line}:3: error: unfreeze cannot be used with strategy fsdp: FSDP "
        "shards the parameters when it wraps the model"
    ) in result.stderr
    assert not (tmp_path / "fsdp" / "checkpoints" / "last.dcp").exists()
