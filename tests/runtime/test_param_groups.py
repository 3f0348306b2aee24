"""Parameter groups with their own learning rates, and unfreezing at an epoch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nnspec.runtime import Trainer
from nnspec.spec import SpecError

FROZEN_MODEL = """\
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
"""


def train_section(extra: str, steps: int = 24) -> str:
    return f"""\
train:
  data: {{source: {{pt: data.pt}}, batch_size: 10, val_fraction: 0.1}}
  loss: {{logits: {{op: CrossEntropyLoss, target: label}}}}
  optimizer: {{op: SGD, lr: 0.1{extra}}}
  steps: {steps}
  log_every: 3
"""


def test_parameter_groups_get_their_own_arguments(
    tiny_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = tiny_spec(
        train_section(", param_groups: [{match: 'hidden.*', lr: 0.001}]", 3)
    )
    trainer = Trainer(spec, tmp_path / "run", progress=False)
    trainer.fit()
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.1, 0.001]
    hidden = {id(p) for p in trainer.model.hidden.parameters()}
    assert {id(p) for p in groups[1]["params"]} == hidden
    assert not hidden & {id(p) for p in groups[0]["params"]}


def test_a_group_that_matches_nothing_is_an_error(
    tiny_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = tiny_spec(train_section(", param_groups: [{match: 'hiden.*', lr: 0.001}]"))
    with pytest.raises(SpecError) as info:
        Trainer(spec, tmp_path / "run", progress=False).fit()
    assert (
        "parameter group 'hiden.*' matches no trainable parameter" in info.value.message
    )
    assert (info.value.line, info.value.column) == (16, 56)


def test_a_group_argument_the_optimizer_lacks_is_an_error(
    tiny_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = tiny_spec(train_section(", param_groups: [{match: 'hidden.*', lrr: 0.001}]"))
    with pytest.raises(SpecError) as info:
        Trainer(spec, tmp_path / "run", progress=False).fit()
    assert "has no argument 'lrr' (did you mean 'lr'?)" in info.value.message


def test_frozen_layer_starts_training_at_its_epoch(
    tiny_spec: Callable[..., Path], tmp_path: Path
) -> None:
    # 100 samples, 90 train, batch 10: 9 steps an epoch; unfreeze at epoch 2.
    train = train_section("", steps=18) + "  unfreeze: [{at_epoch: 2, match: hidden}]\n"
    spec = tiny_spec(train, model=FROZEN_MODEL)
    trainer = Trainer(spec, tmp_path / "run", progress=False)
    seen: list[bool] = []
    weights: list[torch.Tensor] = []
    original = trainer._train_step

    def step(group):  # type: ignore[no-untyped-def]
        seen.append(trainer.model.hidden.weight.requires_grad)
        weights.append(trainer.model.hidden.weight.detach().clone())
        return original(group)

    trainer._train_step = step  # type: ignore[method-assign]
    trainer.fit()
    assert seen == [False] * 9 + [True] * 9
    # Unchanged while frozen, trained after.
    assert all(torch.equal(w, weights[0]) for w in weights[:10])
    assert not torch.equal(trainer.model.hidden.weight.detach(), weights[0])


def test_unfreeze_of_nothing_frozen_is_an_error(
    tiny_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = tiny_spec(train_section("") + "  unfreeze: [{at_epoch: 2, match: hidden}]\n")
    with pytest.raises(SpecError) as info:
        Trainer(spec, tmp_path / "run", progress=False).fit()
    assert (
        "unfreeze 'hidden' matches no frozen parameter; nothing is frozen"
        in info.value.message
    )
