"""``frozen_bn: eval``: a BatchNorm whose parameters are frozen keeps its running
statistics while the rest of the model trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnspec.runtime import Trainer, load_checkpoint
from tests.runtime.conftest import TINY_TRAIN

BN_MODEL = """\
nnspec: 1
name: Normed
inputs:
  x: [6]
layers:
  - {op: Linear, name: hidden, out_features: 16}
  - {op: BatchNorm1d, name: norm}
  - ReLU
  - {op: BatchNorm1d, name: free}
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head}
freeze: [norm]
"""
# 12 steps; a validation at step 11 (the epoch's end) puts the model in eval mode
# and back.
TRAIN = TINY_TRAIN


class Modes:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool]] = []

    def on_step(self, trainer: Trainer, step: int, loss: float) -> None:
        net = trainer.network
        self.seen.append((net.norm.training, net.free.training))


def stats(state: dict[str, torch.Tensor], name: str) -> list[torch.Tensor]:
    return [state[f"{name}.running_mean"], state[f"{name}.running_var"]]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_frozen_batchnorm_keeps_its_statistics_in_eval(
    tiny_spec, tmp_path: Path, mode: str
) -> None:
    spec = tiny_spec(TRAIN + f"  frozen_bn: {mode}\n", model=BN_MODEL)
    out = tmp_path / "run"
    modes = Modes()
    trainer = Trainer(spec, out, progress=False, callbacks=[modes])
    before = {k: v.clone() for k, v in trainer.spec.build().state_dict().items()}
    trainer.fit()
    after = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    frozen_kept = all(
        torch.equal(a, b) for a, b in zip(stats(after, "norm"), stats(before, "norm"))
    )
    assert frozen_kept == (mode == "eval")
    # The BatchNorm that trains updates its statistics either way.
    assert not torch.equal(after["free.running_mean"], before["free.running_mean"])
    # Its weight and bias are frozen, so they stay as built.
    assert torch.equal(after["norm.weight"], before["norm.weight"])
    assert modes.seen == [(mode == "train", True)] * 12
