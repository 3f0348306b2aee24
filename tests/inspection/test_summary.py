"""Spec.summary(): numbers checked against hand counts, nested rows, shared layers."""

from __future__ import annotations

import json

import pytest

import nnspec
from nnspec.cli import main
from nnspec.inspection.summary import ModelSummary
from tests.compiler.test_spec_language import SECTION_1_LENET
from tests.conftest import EXAMPLES

# Section 1 of the language description: LeNet, kept verbatim there.
LENET = SECTION_1_LENET

TWO_HEADS = """\
nnspec: 1
name: TwoHeads
inputs:
  x: [512]
  extra: [1]
layers:
  - {op: Linear, name: trunk, out_features: 256}
  - ReLU
  - {op: Linear, name: shared, out_features: 256}
  - {op: add, name: res, in: [shared, trunk]}
  - {use: shared, name: again}
  - {op: Dropout, p: 0.5}
  - {op: cat, name: joined, in: [dropout, extra], dim: 1}
  - {op: Linear, name: head, out_features: 10}
outputs:
  logits: head
  features: trunk
freeze: [trunk]
"""


def conv_flops(out_channels: int, out_size: int, in_channels: int, k: int) -> int:
    """2 FLOPs (multiply and add) per weight per output position."""
    return 2 * out_channels * out_size * out_size * in_channels * k * k


def linear_flops(n_in: int, n_out: int) -> int:
    return 2 * n_in * n_out


# By hand: 32 -conv5-> 28 -pool-> 14 -conv5-> 10 -pool-> 5; 16 * 5 * 5 = 400 features.
LENET_FLOPS = {
    "conv1": conv_flops(6, 28, 3, 5),
    "conv2": conv_flops(16, 10, 6, 5),
    "fc1": linear_flops(400, 120),
    "fc2": linear_flops(120, 84),
    "fc3": linear_flops(84, 10),
}
LENET_PARAMS = {
    "conv1": 6 * 3 * 5 * 5 + 6,
    "conv2": 16 * 6 * 5 * 5 + 16,
    "fc1": 400 * 120 + 120,
    "fc2": 120 * 84 + 84,
    "fc3": 84 * 10 + 10,
}


@pytest.fixture(scope="module")
def lenet() -> ModelSummary:
    return nnspec.loads(LENET, path="lenet.yaml").summary()


@pytest.fixture(scope="module")
def unet() -> ModelSummary:
    return nnspec.load(EXAMPLES / "unet.yaml").summary()


def test_lenet_parameters_match_hand_count(lenet: ModelSummary) -> None:
    for name, count in LENET_PARAMS.items():
        assert lenet[name].params == count, name
    assert lenet.totals.params == sum(LENET_PARAMS.values()) == 62_006
    assert lenet.totals.trainable_params == 62_006
    assert lenet.totals.param_bytes == {"float32": 4 * 62_006}


def test_lenet_flops_match_hand_count(lenet: ModelSummary) -> None:
    for name, flops in LENET_FLOPS.items():
        assert lenet[name].flops == flops, name
    for row in lenet.rows:
        if row.node not in LENET_FLOPS:
            assert row.flops == 0, f"{row.node} ({row.op}) does no matmul or conv"
    forward = sum(LENET_FLOPS.values())
    assert lenet.totals.flops_forward == forward == 1_303_440
    # Backward: each layer computes its input's gradient and its weight's gradient,
    # each as costly as its forward pass, except conv1, whose input needs no gradient.
    assert lenet.totals.flops_forward_backward == 3 * forward - LENET_FLOPS["conv1"]


def test_lenet_rows_show_shapes_in_order(lenet: ModelSummary) -> None:
    assert [(r.node, r.op, r.shape) for r in lenet.rows][:4] == [
        ("conv1", "Conv2d", "[B,6,28,28]"),
        ("relu", "ReLU", "[B,6,28,28]"),
        ("max_pool2d", "MaxPool2d", "[B,6,14,14]"),
        ("conv2", "Conv2d", "[B,16,10,10]"),
    ]
    assert lenet["flatten"].shape == "[B,400]"
    fc3_line = next(i for i, t in enumerate(LENET.splitlines(), 1) if "name: fc3" in t)
    assert lenet["fc3"].line == fc3_line
    assert [(o.key, o.value.render()) for o in lenet.outputs] == [("fc3", "[B,10]")]


def test_activation_memory_is_what_backward_keeps() -> None:
    spec = nnspec.loads(
        "nnspec: 1\nname: Mlp\ninputs: {x: [10]}\nlayers:\n"
        "  - {op: Linear, out_features: 20}\n  - ReLU\n"
        "  - {op: Linear, out_features: 5}\n"
    )
    summary = spec.summary()
    # Per sample, autograd keeps the input (for the first weight's gradient) and the
    # ReLU's output (for the ReLU and the second weight): 10 + 20 float32 numbers.
    assert summary.totals.activation_bytes == (10 + 20) * 4


def test_unet_rows_nest_blocks_with_their_own_shapes(unet: ModelSummary) -> None:
    up1 = unet["up1"]
    assert up1.kind == "block" and up1.op == "Up"
    assert [c.node for c in up1.children] == ["up", "cat", "conv"]
    # The skip connection joins down3's 512 channels to 512 upsampled ones at 8x8.
    assert unet["up1.cat"].shape == "[B,1024,8,8]"
    assert unet["up1.cat"].inputs == ["skip", "up"]
    assert unet["up4.cat"].shape == "[B,128,64,64]"
    conv = unet["down2.conv.conv2d"]
    assert conv.shape == "[B,256,16,16]"
    # 3x3 conv from 128 to 256 channels at 16x16, no bias.
    assert conv.params == 128 * 256 * 9
    assert conv.flops == conv_flops(256, 16, 128, 3)
    for row in unet.walk():
        if row.children:
            assert row.params == sum(c.params for c in row.children), row.name
            assert row.flops == sum(c.flops for c in row.children), row.name
    assert unet.totals.params == sum(r.params for r in unet.rows)
    assert unet.totals.flops_forward == sum(r.flops for r in unet.rows)


def test_shared_layer_counts_weights_once_and_compute_twice() -> None:
    summary = nnspec.loads(TWO_HEADS).summary()
    again = summary["again"]
    assert (again.kind, again.op, again.module) == ("use", "Linear", "shared")
    assert again.params == 0
    assert again.flops == summary["shared"].flops == linear_flops(256, 256)
    trunk = 512 * 256 + 256
    shared = 256 * 256 + 256
    head = 257 * 10 + 10
    assert summary.totals.params == trunk + shared + head
    assert summary["trunk"].trainable == "frozen"
    assert summary["head"].trainable == "trainable"
    assert summary.totals.trainable_params == shared + head
    assert summary["joined"].shape == "[B,257]"
    assert [o.key for o in summary.outputs] == ["logits", "features"]


def test_repeat_rows_are_its_copies() -> None:
    spec = nnspec.loads(
        "nnspec: 1\nname: Stack\ninputs: {x: [8]}\nlayers:\n"
        "  - {op: Linear, name: layers, out_features: 8, repeat: 3}\n"
    )
    summary = spec.summary()
    layers = summary["layers"]
    assert layers.kind == "repeat"
    assert [c.name for c in layers.children] == ["layers.0", "layers.1", "layers.2"]
    assert all(c.params == 8 * 8 + 8 for c in layers.children)


def test_ten_billion_parameters_summarise_on_meta() -> None:
    # 4 x (50000 x 50000 + 50000) = 10,000,200,000 parameters: 40 GB in float32,
    # far beyond this machine, so the summary cannot have allocated them.
    spec = nnspec.loads(
        "nnspec: 1\nname: Huge\ninputs: {x: [50000]}\nlayers:\n"
        "  - {op: Linear, name: layers, out_features: 50000, repeat: 4}\n"
    )
    summary = spec.summary()
    per_layer = 50_000 * 50_000 + 50_000
    assert summary.totals.params == 4 * per_layer
    assert summary.totals.param_bytes == {"float32": 4 * 4 * per_layer}
    assert summary.totals.flops_forward == 4 * 2 * 50_000 * 50_000
    assert summary["layers.3"].flops == 2 * 50_000 * 50_000


def test_dtype_changes_parameter_memory(lenet: ModelSummary) -> None:
    import torch

    half = nnspec.loads(LENET).summary(dtype=torch.bfloat16)
    assert half.totals.param_bytes == {"bfloat16": 2 * 62_006}
    assert half.totals.flops_forward == lenet.totals.flops_forward


def test_text_table_lists_nested_rows(unet: ModelSummary) -> None:
    text = unet.render()
    lines = text.splitlines()
    up1 = next(line for line in lines if line.startswith("up1 "))
    assert "Up" in up1 and "[B,256,8,8]" in up1 and "5,899,776" in up1
    assert any(line.startswith("  cat ") and "[B,1024,8,8]" in line for line in lines)
    assert any(line.startswith("    conv2d ") for line in lines)
    assert "parameters         17,263,042" in text
    shallow = unet.render(depth=0)
    assert not any(line.startswith("  cat ") for line in shallow.splitlines())


def test_cli_json_matches_the_api(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "lenet.yaml"
    path.write_text(LENET, encoding="utf-8")
    assert main(["summary", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 62_006
    assert data["totals"]["flops_forward_per_sample"] == 1_303_440
    rows = {row["name"]: row for row in data["rows"]}
    assert rows["conv1"]["dims"] == [None, 6, 28, 28]
    assert rows["fc1"]["flops"] == LENET_FLOPS["fc1"]


def test_cli_reports_spec_errors_with_position(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    text = LENET.replace("kernel_size: 5}", "kernal_size: 5}", 1)
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "kernal_size" in t)
    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err and "kernal_size" in err
