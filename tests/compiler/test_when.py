"""Conditional nodes (``when:``): absent where the condition is false, the first input
passed through; in a block class, built ``... if <condition> else None`` as
torchvision writes its ResNet downsample and MobileNet residual."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import nnspec
from tests.compiler.ruff import ruff_check, ruff_format_check
from tests.helpers import expect_error
from tests.security.ast_allowlist import check_generated_source

BOTTLENECK = """\
nnspec: 1
name: Net
inputs:
  x: [16, 8, 8]
blocks:
  Bottleneck:
    params: {planes: {type: int}, stride: 1, down: false}
    inputs: [x]
    layers:
      - {op: Conv2d, name: conv1, in: x, out_channels: "${planes}", kernel_size: 1, bias: false}
      - {op: BatchNorm2d, name: bn1}
      - {op: ReLU, name: relu1}
      - {op: Conv2d, name: conv2, out_channels: "${planes}", kernel_size: 3,
         stride: "${stride}", padding: 1, bias: false}
      - {op: BatchNorm2d, name: bn2}
      - {op: ReLU, name: relu2}
      - {op: Conv2d, name: conv3, out_channels: "${planes * 4}", kernel_size: 1, bias: false}
      - {op: BatchNorm2d, name: bn3}
      - {op: Conv2d, name: downsample, in: x, when: "${down}",
         out_channels: "${planes * 4}", kernel_size: 1, stride: "${stride}", bias: false}
      - {op: add, in: [bn3, downsample]}
      - ReLU
layers:
  - {op: Bottleneck, name: layer1, planes: 8, stride: 2, down: true}
  - {op: Bottleneck, name: layer2, planes: 8}
"""


class RefBottleneck(nn.Module):
    """As torchvision's ResNet writes it (without its expansion attribute)."""

    def __init__(self, inplanes: int, planes: int, stride: int, down: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = (
            nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False)
            if down
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return torch.relu(out + identity)


def _body(text: str) -> str:
    """A spec without the header lines that ``expect_error`` puts in front."""
    return text.removeprefix("nnspec: 1\nname: Net\n")


def _block_class(spec: nnspec.Spec, name: str) -> type[nn.Module]:
    module = sys.modules[spec.module_class().__module__]
    cls = getattr(module, name)
    assert isinstance(cls, type) and issubclass(cls, nn.Module)
    return cls


def _same_outputs(model: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    assert list(model.state_dict()) == list(reference.state_dict())
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert a.shape == b.shape, k
    reference.load_state_dict(model.state_dict())
    model.eval()
    reference.eval()
    assert_close(model(x), reference(x))


def test_one_block_class_serves_uses_with_and_without_the_downsample() -> None:
    spec = nnspec.loads(BOTTLENECK)
    source = spec.source()
    assert source.count("class Bottleneck(nn.Module)") == 1
    assert "            if down\n            else None\n" in source
    assert "if self.downsample is not None:" in source
    assert "downsample = self.downsample(x)" in source
    assert (
        "self.layer1 = Bottleneck(in_channels=16, planes=8, stride=2, down=True)"
        in (source)
    )
    assert "self.layer2 = Bottleneck(in_channels=32, planes=8)" in source
    model = spec.build()
    keys = list(model.state_dict())
    assert "layer1.downsample.weight" in keys
    assert not any(k.startswith("layer2.downsample") for k in keys)
    assert model.layer2.downsample is None
    reference = nn.Sequential()
    reference.add_module("layer1", RefBottleneck(16, 8, 2, True))
    reference.add_module("layer2", RefBottleneck(32, 8, 1, False))
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p)
    _same_outputs(model, reference, torch.randn(3, 16, 8, 8))


def test_the_block_class_builds_either_case_from_its_constructor() -> None:
    cls = _block_class(nnspec.loads(BOTTLENECK), "Bottleneck")
    with_down = cls(in_channels=4, planes=2, stride=2, down=True)
    without = cls(in_channels=8, planes=2)
    assert isinstance(with_down.downsample, nn.Conv2d)
    assert with_down.downsample.in_channels == 4
    assert with_down.downsample.stride == (2, 2)
    assert without.downsample is None
    assert with_down(torch.randn(1, 4, 6, 6)).shape == (1, 8, 3, 3)
    assert without(torch.randn(1, 8, 6, 6)).shape == (1, 8, 6, 6)


def test_the_source_passes_the_checks(tmp_path: Path) -> None:
    source = nnspec.loads(BOTTLENECK).source()
    check_generated_source(source)
    path = tmp_path / "bottleneck.py"
    path.write_text(source, encoding="utf-8")
    assert ruff_format_check([path]) is None
    assert ruff_check([path]) is None


def test_each_use_checks_its_own_case() -> None:
    # Without the downsample the shortcut is x, of 16 channels: bn3 has 32.
    text = BOTTLENECK.replace(
        "name: layer1, planes: 8, stride: 2, down: true", "name: layer1, planes: 8"
    )
    err = expect_error(_body(text), 21, 23, "node 'add'", "32", "16")
    assert "as used by node 'layer1'" in err.message


MOBILE = """\
nnspec: 1
name: Mobile
inputs:
  x: [8, 8, 8]
blocks:
  Inverted:
    params: {out: {type: int}, stride: 1}
    layers:
      - {op: Conv2d, name: conv, out_channels: "${out}", kernel_size: 3,
         stride: "${stride}", padding: 1, bias: false}
      - {op: BatchNorm2d, name: bn}
      - {op: add, name: res, in: [bn, x], when: "${stride == 1 and x.shape[1] == out}"}
layers:
  - {op: Inverted, name: b1, out: 8}
  - {op: Inverted, name: b2, out: 16, stride: 2}
  - {op: Inverted, name: b3, out: 16}
"""


class RefInverted(nn.Module):
    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inp, out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.use_res_connect = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return self.bn(self.conv(x)) + x
        return self.bn(self.conv(x))


def test_a_conditional_function_is_a_residual_when_the_sizes_allow() -> None:
    spec = nnspec.loads(MOBILE)
    source = spec.source()
    assert source.count("class Inverted(nn.Module)") == 1
    assert "self.use_res = stride == 1 and in_channels == out" in source
    assert "        if self.use_res:\n            res = torch.add(h, x)" in source
    model = spec.build()
    assert [model.b1.use_res, model.b2.use_res, model.b3.use_res] == [True, False, True]
    reference = nn.Sequential()
    for name, inp, out, stride in [
        ("b1", 8, 8, 1),
        ("b2", 8, 16, 2),
        ("b3", 16, 16, 1),
    ]:
        reference.add_module(name, RefInverted(inp, out, stride))
    _same_outputs(model, reference, torch.randn(2, 8, 8, 8))


MODEL_LEVEL = """\
nnspec: 1
name: Net
params: {dropout: false, hidden: true}
inputs: {x: [6]}
layers:
  - {op: Linear, name: fc1, out_features: 8}
  - {op: Dropout, name: drop, p: 0.5, when: "${dropout}"}
  - {op: Linear, name: fc2, out_features: 8, when: "${hidden}"}
  - {op: ReLU, name: act, when: false}
  - {op: Linear, name: head, out_features: 2}
outputs: {logits: head, features: act}
"""


def test_a_model_level_condition_is_decided_when_the_spec_compiles() -> None:
    spec = nnspec.loads(MODEL_LEVEL)
    source = spec.source()
    assert "drop" not in source and "act" not in source and " if " not in source
    assert "self.fc2 = nn.Linear(8, 8)" in source
    assert 'return {"logits": self.head(fc2), "features": fc2}' in source
    model = spec.build()
    assert list(model.state_dict()) == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "head.weight",
        "head.bias",
    ]
    x = torch.randn(3, 6)
    out = model(x)
    features = model.fc2(model.fc1(x))
    assert_close(out["features"], features)
    assert_close(out["logits"], model.head(features))


def test_a_model_level_condition_follows_params() -> None:
    spec = nnspec.loads(MODEL_LEVEL, params={"hidden": False, "dropout": True})
    model = spec.build()
    assert [n for n, _ in model.named_children()] == ["fc1", "drop", "head"]
    assert model.head.in_features == 8
    summary = str(spec.summary())
    assert "drop" in summary and "fc2" not in summary


def test_init_and_freeze_rules_reach_modules_present_in_some_uses() -> None:
    text = BOTTLENECK + (
        "init:\n  - {match: '*.downsample', weight: zeros}\nfreeze: ['*.downsample']\n"
    )
    model = nnspec.loads(text).build()
    assert torch.count_nonzero(model.layer1.downsample.weight) == 0
    assert not model.layer1.downsample.weight.requires_grad


def test_a_rule_for_a_module_absent_everywhere_matches_nothing() -> None:
    text = MODEL_LEVEL + "freeze: [drop]\n"
    expect_error(_body(text), 12, 10, "'drop'")


@pytest.mark.parametrize(
    ("when", "column", "words"),
    [
        ('"${planes}"', 53, ("when must be true or false", "number 8")),
        ('"${conv1 > 0}"', 53, ("'conv1' is a value computed when forward runs",)),
        ('"${dwon}"', 53, ("unknown name 'dwon'", "down")),
    ],
)
def test_bad_conditions_are_located(when: str, column: int, words: tuple) -> None:
    text = BOTTLENECK.replace('when: "${down}"', f"when: {when}")
    expect_error(_body(text), 19, column, "node 'downsample'", *words)


def test_a_node_without_an_input_cannot_be_conditional() -> None:
    text = """\
inputs: {x: [4]}
blocks:
  Const:
    inputs: []
    layers:
      - {op: Linear, in_features: 4, out_features: 4, when: true}
layers:
  - {op: Const}
"""
    expect_error(_body(text), 8, 55, "has no input", "cannot be conditional")


def test_a_use_node_cannot_be_conditional() -> None:
    text = """\
inputs: {x: [4]}
layers:
  - {op: Linear, name: a, out_features: 4}
  - {use: a, when: true}
"""
    expect_error(_body(text), 6, 14, "'use' node cannot be conditional")


def test_a_block_whose_uses_all_leave_the_node_out_still_builds_it_when_told() -> None:
    text = BOTTLENECK.replace(
        "name: layer1, planes: 8, stride: 2, down: true", "name: layer1, planes: 4"
    ).replace("name: layer2, planes: 8", "name: layer2, planes: 4")
    spec = nnspec.loads(text)
    model = spec.build()
    assert not any("downsample" in k for k in model.state_dict())
    cls = _block_class(spec, "Bottleneck")
    built = cls(in_channels=4, planes=2, stride=2, down=True)
    assert isinstance(built.downsample, nn.Conv2d)
    assert built(torch.randn(1, 4, 6, 6)).shape == (1, 8, 3, 3)


def test_a_conditional_repeat_and_block_in_a_block() -> None:
    text = """\
inputs: {x: [8, 4, 4]}
blocks:
  Inner:
    params: {out: {type: int}}
    layers:
      - {op: Conv2d, name: conv, out_channels: "${out}", kernel_size: 1}
  Outer:
    params: {deep: false}
    layers:
      - {op: Conv2d, name: convs, repeat: 2, out_channels: 8, kernel_size: 1, when: "${deep}"}
      - {op: Inner, name: inner, out: 8, when: "${deep}"}
layers:
  - {op: Outer, name: a}
  - {op: Outer, name: b, deep: true}
"""
    spec = nnspec.loads("nnspec: 1\nname: Net\n" + text)
    source = spec.source()
    assert "if deep\n" in source or ") if deep else None" in source
    model = spec.build()
    assert model.a.convs is None and model.a.inner is None
    assert list(model.state_dict()) == [
        "b.convs.0.weight",
        "b.convs.0.bias",
        "b.convs.1.weight",
        "b.convs.1.bias",
        "b.inner.conv.weight",
        "b.inner.conv.bias",
    ]
    x = torch.randn(2, 8, 4, 4)
    assert_close(model.a(x), x)
    assert_close(model(x), model.b.inner(model.b.convs(x)))


def test_a_conditional_node_no_use_can_build_for_its_inputs_is_an_error() -> None:
    text = """\
inputs: {x: [6, 4, 4], y: [8, 4, 4]}
blocks:
  P:
    params: {grouped: false}
    layers:
      - {op: Conv2d, name: conv, out_channels: 8, kernel_size: 1, groups: 4, when: "${grouped}"}
      - ReLU
layers:
  - {op: P, name: a, in: x}
  - {op: P, name: b, in: y, grouped: true}
"""
    expect_error(text, 11, 5, "block P", "reads in_channels", "write two blocks")


def test_a_derived_spec_replaces_a_node_with_a_conditional_one(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "nnspec: 1\nname: Base\nparams: {drop: false}\ninputs: {x: [4]}\n"
        "layers:\n  - {op: Linear, name: fc, out_features: 4}\n"
        "  - {op: ReLU, name: act}\n",
        encoding="utf-8",
    )
    (tmp_path / "child.yaml").write_text(
        "nnspec: 1\nextends: base.yaml\nname: Child\n"
        "replace:\n  act: {op: Dropout, p: 0.5, when: '${drop}'}\n",
        encoding="utf-8",
    )
    assert "self.act" not in nnspec.load(tmp_path / "child.yaml").source()
    spec = nnspec.load(tmp_path / "child.yaml", params={"drop": True})
    assert "self.act = nn.Dropout(p=0.5)" in spec.source()


def test_summary_and_graph_show_the_nodes_each_use_runs() -> None:
    from nnspec.inspection.graph_render import build_diagram, to_mermaid

    summary = nnspec.loads(MOBILE).summary()
    blocks = {row.node: [c.node for c in row.children] for row in summary.rows}
    assert blocks == {
        "b1": ["conv", "bn", "res"],
        "b2": ["conv", "bn"],
        "b3": ["conv", "bn", "res"],
    }
    chart = to_mermaid(build_diagram(summary))
    assert "n_b1_res" in chart and "n_b2_res" not in chart
    # b2 leaves its residual out: its batch norm feeds the next block.
    assert '  n_b2_bn -->|"[B,16,4,4]"| n_b3_conv' in chart
    assert '  n_b2_bn -->|"[B,16,4,4]"| n_b3_res' in chart


SEQ_DOWNSAMPLE = """\
inputs: {x: [8, 4, 4]}
blocks:
  B:
    params: {down: false}
    layers:
      - {op: Conv2d, name: conv, out_channels: 8, kernel_size: 1}
      - name: downsample
        in: x
        when: "${down}"
        seq: [{op: Conv2d, out_channels: 8, kernel_size: 1, bias: false}, BatchNorm2d]
      - {op: add, in: [conv, downsample]}
layers:
  - {op: B, name: a, down: true}
  - {op: B, name: b}
"""


def test_a_conditional_seq_is_torchvisions_downsample() -> None:
    model = nnspec.loads("nnspec: 1\nname: Net\n" + SEQ_DOWNSAMPLE).build()
    keys = [k for k in model.state_dict() if "downsample" in k]
    assert keys[:2] == ["a.downsample.0.weight", "a.downsample.1.weight"]
    assert all(k.startswith("a.") for k in keys)
    assert model.b.downsample is None
    x = torch.randn(2, 8, 4, 4)
    model.eval()
    assert_close(model.b(x), model.b.conv(x) + x)
    assert_close(model.a(x), model.a.conv(x) + model.a.downsample(x))


def test_a_child_of_a_seq_cannot_be_conditional() -> None:
    text = SEQ_DOWNSAMPLE.replace(
        "bias: false}, BatchNorm2d]", "bias: false}, {op: BatchNorm2d, when: true}]"
    )
    expect_error(text, 12, 93, "a child of a seq cannot be conditional")
