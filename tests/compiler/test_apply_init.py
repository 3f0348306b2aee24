"""The init and freeze pass: which parameters each rule reaches, and its mistakes."""

from __future__ import annotations

import torch

from tests.helpers import compile_text, expect_error

MODEL = """
inputs: {x: [3, 8, 8]}
layers:
  - {op: Conv2d, name: conv, out_channels: 4, kernel_size: 3}
  - BatchNorm2d
  - Flatten
  - {op: Linear, name: fc1, out_features: 8}
  - {op: Linear, name: head, out_features: 2}
"""


def test_later_rules_win_and_statements_are_grouped() -> None:
    spec = compile_text(
        MODEL
        + """
init:
  - {match: Linear, weight: {constant: 1.0}, bias: zeros}
  - {match: "head", weight: {constant: 2.0}}
"""
    )
    source = spec.source()
    assert "for module in (self.fc1, self.head):" not in source  # head's weight differs
    assert "nn.init.constant_(self.fc1.weight, 1.0)" in source
    assert "nn.init.constant_(self.head.weight, 2.0)" in source
    model = spec.build()
    assert torch.all(model.fc1.weight == 1.0) and torch.all(model.head.weight == 2.0)
    assert torch.all(model.fc1.bias == 0) and torch.all(model.head.bias == 0)


def test_one_rule_over_several_modules_is_one_loop() -> None:
    source = compile_text(MODEL + "init: [{match: Linear, bias: zeros}]\n").source()
    assert (
        "for module in (self.fc1, self.head):\n"
        "            if module.bias is not None:\n"
        "                nn.init.zeros_(module.bias)" in source
    )


def test_rules_reach_modules_inside_torch_composites() -> None:
    spec = compile_text(
        """
        inputs: {x: [5, 16]}
        layers:
          - op: TransformerEncoderLayer
            name: enc
            nhead: 2
            dim_feedforward: 32
            batch_first: true
        init: [{match: Linear, bias: {constant: 0.5}}]
        """
    )
    model = spec.build()
    assert torch.all(model.enc.linear1.bias == 0.5) and torch.all(
        model.enc.linear2.bias == 0.5
    )
    # MultiheadAttention's out_proj is a subclass of Linear: the rule reaches it too.
    assert torch.all(model.enc.self_attn.out_proj.bias == 0.5)
    assert "self.enc.self_attn.out_proj" in spec.source()


def test_freeze_keeps_only_the_outermost_match() -> None:
    spec = compile_text(MODEL + 'freeze: ["fc*", "fc1"]\n')
    model = spec.build()
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trains == {"conv.weight", "conv.bias", "batch_norm2d.weight", "batch_norm2d.bias",
                      "head.weight", "head.bias"}  # fmt: skip
    assert spec.source().count("requires_grad_(False)") == 1


def test_rule_that_matches_nothing() -> None:
    expect_error(
        MODEL + "init: [{match: Conv3d, weight: zeros}]\n", 10, 16, "matches no module"
    )


def test_parameter_no_match_has() -> None:
    expect_error(
        MODEL + "init: [{match: Flatten, weight: zeros}]\n",
        10, 25, "none of the matching modules has a parameter 'weight'",
    )  # fmt: skip


def test_unknown_initialiser_suggests() -> None:
    expect_error(
        MODEL + "init: [{match: Linear, weight: xavier_norml}]\n",
        10, 32, "unknown initialiser 'xavier_norml'", "did you mean 'xavier_normal'?",
    )  # fmt: skip


def test_initialiser_that_cannot_fit_the_parameter() -> None:
    expect_error(
        MODEL + "init: [{match: Linear, bias: xavier_normal}]\n",
        10, 30, "xavier_normal cannot initialise fc1.bias (shape [8])",
    )  # fmt: skip


def test_freeze_that_matches_nothing() -> None:
    expect_error(
        MODEL + 'freeze: ["bakcbone"]\n', 10, 10, "freeze 'bakcbone' matches no module"
    )
