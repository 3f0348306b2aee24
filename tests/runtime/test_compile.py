"""torch.compile: in place, one graph per mode for the whole run, failures explained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import nnspec
from nnspec.runtime import Trainer, TrainError, load_checkpoint
from tests.runtime.conftest import TINY_TRAIN, records, train_losses

BROKEN_BACKEND = "nnspec_test_broken"


def _broken(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> None:
    raise RuntimeError("no kernel for aten.addmm on this device")


if BROKEN_BACKEND not in torch._dynamo.list_backends(exclude_tags=()):
    torch._dynamo.register_backend(_broken, name=BROKEN_BACKEND)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def fit(spec: Path, out: Path, **overrides: object):
    return Trainer(spec, out, overrides=overrides, progress=False).fit()


def test_short_last_batches_cause_no_recompiles(tiny_spec, tmp_path: Path) -> None:
    # 90 training samples in batches of 8 (11 full batches, 2 samples over) and
    # 10 validation samples (a batch of 8 and one of 2), for 3 epochs.
    spec = tiny_spec(
        TINY_TRAIN.replace("steps: 12", "epochs: 3")
        + "  compile: {backend: aot_eager}\n"
    )
    result = fit(spec, tmp_path / "run")
    assert result.step == 33
    assert len([r for r in records(tmp_path / "run") if "val_loss" in r]) == 3
    # One graph for training, one for evaluation (eval mode, no grad), and no more.
    assert counters["stats"]["unique_graphs"] == 2
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert list(saved["model"]) == list(nnspec.load(spec).build().state_dict())


def test_the_graph_counter_does_see_a_new_batch_size(tiny_spec) -> None:
    # The counter the test above relies on: a batch of another size is a new graph.
    model = nnspec.load(tiny_spec()).build()
    model.compile(backend="aot_eager")
    model(torch.randn(8, 6))
    model(torch.randn(8, 6))
    assert counters["stats"]["unique_graphs"] == 1
    model(torch.randn(2, 6))
    assert counters["stats"]["unique_graphs"] == 2


def test_a_compile_failure_is_reported_with_its_cause(tiny_spec, tmp_path) -> None:
    spec = tiny_spec(TINY_TRAIN + f"  compile: {{backend: {BROKEN_BACKEND}}}\n")
    with pytest.raises(TrainError) as info:
        fit(spec, tmp_path / "run")
    assert str(info.value) == (
        f"torch.compile (backend {BROKEN_BACKEND}) failed: RuntimeError: no kernel "
        "for aten.addmm on this device\ntrain without it with --set compile=false"
    )
    assert isinstance(info.value.__cause__, torch._dynamo.exc.TorchDynamoException)


LINEAR = """\
nnspec: 1
name: Lin
inputs:
  x: [6]
layers:
  - {op: Linear, name: hidden, out_features: 8}
  - ReLU
  - {op: Linear, name: head, out_features: 3}
train:
  data: {source: {pt: data.pt}, batch_size: 8}
  loss: {head: {op: CrossEntropyLoss, target: label}}
  optimizer: {op: SGD, lr: 0.1}
  steps: 3
  log_every: 1
"""


def test_inductor_trains_like_eager(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(train="", model=LINEAR)
    fit(spec, tmp_path / "eager")
    fit(spec, tmp_path / "inductor", compile=True)
    eager, compiled = (
        train_losses(tmp_path / "eager"),
        train_losses(tmp_path / "inductor"),
    )
    assert list(compiled) == [1, 2, 3]
    assert list(compiled.values()) == pytest.approx(list(eager.values()), rel=1e-4)
    saved = load_checkpoint(tmp_path / "inductor" / "checkpoints" / "last.pt")
    assert list(saved["model"]) == [
        "hidden.weight",
        "hidden.bias",
        "head.weight",
        "head.bias",
    ]
