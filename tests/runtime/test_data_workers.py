"""Datasets with random augmentation: a batch's items are made from a random state
seeded by (seed, epoch, position in the epoch), so the data of a run does not
depend on the worker that makes a batch, nor on a resume."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from nnspec.runtime.data import Batches, DatasetSamples
from nnspec.runtime.loop import Trainer
from tests.runtime.augmented_data import Noisy
from tests.runtime.conftest import TINY_MODEL, train_losses

CPU = torch.device("cpu")
DTYPES = {"x": torch.float32, "label": torch.int64}

AUGMENTED = """\
train:
  data:
    source: tests.runtime.augmented_data:noisy
    batch_size: 8
    workers: 2
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  optimizer: {op: AdamW, lr: 0.01}
  steps: 9
  log_every: 1
"""


def epoch_inputs(workers: int, start: int = 0, epoch: int = 1) -> list[Tensor]:
    batches = Batches(DatasetSamples(Noisy(), DTYPES), 8, CPU, workers=workers)
    return [b["x"] for b in batches.epoch(epoch, shuffle=True, start=start)]


def test_a_batch_is_the_same_from_any_worker_and_any_start() -> None:
    torch.manual_seed(0)
    alone = epoch_inputs(0)
    torch.manual_seed(1)  # the global random state plays no part
    two = epoch_inputs(2)
    late = epoch_inputs(2, start=16)  # started at the third batch, as on resume
    assert len(alone) == len(two) == 5 and len(late) == 3
    for a, b in zip(alone, two):
        assert torch.equal(a, b)
    for a, b in zip(alone[2:], late):
        assert torch.equal(a, b)
    # Another epoch gets other noise; every batch gets its own.
    assert not torch.equal(epoch_inputs(0, epoch=2)[0], alone[0])
    assert not torch.equal(alone[0] - alone[1], torch.zeros(8, 6))


def test_items_made_in_the_main_process_leave_its_random_state_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    epoch_inputs(0)
    assert torch.equal(torch.rand(3), expected)


def test_resume_with_workers_and_augmentation_is_exact(tmp_path: Path) -> None:
    # 40 samples in batches of 8: 5 steps an epoch; stopped at step 7, mid-epoch 2.
    spec = tmp_path / "aug.yaml"
    spec.write_text(TINY_MODEL + AUGMENTED, encoding="utf-8")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    allow = ["tests"]
    Trainer(spec, straight, allow_imports=allow, progress=False).fit()
    first = Trainer(
        spec, stopped, overrides={"steps": 7}, allow_imports=allow, progress=False
    ).fit()
    assert first.step == 7
    Trainer(spec, stopped, resume=True, allow_imports=allow, progress=False).fit()
    expected, got = train_losses(straight), train_losses(stopped)
    assert list(got) == list(range(1, 10))
    assert [got[s] for s in range(8, 10)] == [expected[s] for s in range(8, 10)]
