"""The train: section is validated like the rest of the spec: positions and suggestions."""

from __future__ import annotations

import textwrap

import pytest

import nnspec
from nnspec.spec.train import TrainSpec

MODEL = """\
nnspec: 1
name: Tiny
inputs:
  x: [4]
layers:
  - {op: Linear, name: head, out_features: 3}
"""


def errors_of(train_yaml: str) -> list[str]:
    text = MODEL + "train:\n" + textwrap.indent(textwrap.dedent(train_yaml), "  ")
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(text, path="t.yaml")
    return [str(d) for d in info.value.diagnostics]


def test_a_valid_section_is_typed_with_defaults() -> None:
    text = MODEL + textwrap.dedent(
        """\
        train:
          data: {source: {npz: d.npz}, batch_size: 8}
          loss: {head: {op: CrossEntropyLoss, target: y, label_smoothing: 0.1}}
        """
    )
    train = nnspec.loads(text).compiled.spec.train
    assert isinstance(train, TrainSpec)
    assert train.data.source.npz == "d.npz"
    assert train.loss["head"].arguments == {"label_smoothing": 0.1}
    assert train.loss["head"].weight == 1.0
    assert train.optimizer.op == "AdamW"
    assert train.optimizer.arguments == {"lr": 0.001}
    assert (train.precision, train.compile, train.accumulate) == ("32-true", False, 1)


def test_unknown_key_is_reported_at_its_line_with_a_suggestion() -> None:
    errors = errors_of(
        """\
        data: {source: synthetic}
        loss: {head: {op: MSELoss, target: y}}
        optimiser: {op: SGD, lr: 0.1}
        """
    )
    assert len(errors) == 1
    assert errors[0].startswith(
        "t.yaml:10:3: error: unknown key 'optimiser' in train (did you mean 'optimizer'?)"
    )


def test_every_mistake_of_the_section_is_reported_at_once() -> None:
    errors = errors_of(
        """\
        data:
          source: {npzz: d.npz}
          batch_size: 0
          val_fraction: 1.5
        loss: {head: {op: MSELoss}}
        precision: bf16
        compile: {mode: fast}
        """
    )
    assert errors == [
        "t.yaml:9:14: error: unknown key 'npzz' in train.data.source "
        "(did you mean 'npz'?); known keys: args, csv, features, function, images, "
        "items, masks, npz, parquet, paths, pt, synthetic, target, target_dtype, "
        "transforms",
        "t.yaml:10:17: error: train.data.batch_size: expected at least 1, received 0",
        "t.yaml:11:19: error: train.data.val_fraction: expected less than 1, "
        "received 1.5",
        "t.yaml:12:10: error: train.loss.head is missing the required key 'target'",
        "t.yaml:13:14: error: train.precision: expected one of '32-true', "
        "'bf16-mixed', '16-mixed', received string 'bf16'",
        "t.yaml:14:19: error: train.compile.mode: expected one of 'default', "
        "'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs', "
        "received string 'fast'",
    ]


def test_an_empty_loss_mapping_is_an_error() -> None:
    errors = errors_of("data: {source: synthetic}\nloss: {}\n")
    assert errors == ["t.yaml:9:9: error: train.loss: must not be empty"]
