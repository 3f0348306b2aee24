"""The end-to-end benchmark compares like with like: its hand-written script trains
the network examples/digits.yaml declares, as its train section says."""

from __future__ import annotations

import torch

import nnspec
from bench import hand_digits
from bench.common import ROOT
from bench.digits_net import digits_net

SPEC = ROOT / "examples" / "digits.yaml"


def test_the_hand_written_network_is_the_specs() -> None:
    generated = nnspec.load(SPEC).build()
    hand = digits_net()
    shapes = [tuple(p.shape) for p in generated.state_dict().values()]
    assert shapes == [tuple(p.shape) for p in hand.state_dict().values()]
    # Same weights, same outputs.
    with torch.no_grad():
        for mine, theirs in zip(hand.state_dict().values(), generated.parameters()):
            mine.copy_(theirs)
    generated.eval()
    hand.eval()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(generated(x)["logits"], hand(x))


def test_the_hand_written_script_follows_the_train_section() -> None:
    train = nnspec.load(SPEC).compiled.spec.train
    assert train is not None
    assert train.epochs == hand_digits.EPOCHS
    assert train.data.batch_size == hand_digits.BATCH
    assert train.log_every == hand_digits.LOG_EVERY
    assert train.data.val_fraction == hand_digits.VAL_FRACTION
    assert train.optimizer.op == "AdamW"
    assert train.optimizer.arguments == {"lr": 0.002, "weight_decay": 0.01}
    assert train.scheduler is not None and train.scheduler.op == "OneCycleLR"
    assert train.scheduler.arguments == {"max_lr": 0.004}
    x, y, val_x, val_y = hand_digits.split_data(0)
    # nnspec's run: 1,617 training and 180 validation samples, 25 steps an epoch.
    assert (len(x), len(val_x), len(val_y)) == (1617, 180, 180)
    assert len(x) // hand_digits.BATCH == 25
    assert x.shape[1:] == (1, 8, 8) and y.dtype == torch.int64
