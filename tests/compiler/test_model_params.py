"""The model's class takes the spec's params as keyword arguments: one generated
file builds every configuration, the same modules ``nnspec.load(params=...)``
builds; a param the class cannot honour is not in its signature."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import nnspec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _signature(cls: type[nn.Module]) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY
        for name, p in params.items()
        if name != "self"
    )
    return {n: p.default for n, p in params.items() if n != "self"}


def _same_model(built: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    ours, theirs = built.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in theirs.items()
    }
    built.load_state_dict(theirs)
    built.eval()
    reference.eval()
    with torch.no_grad():
        assert_close(built(x), reference(x))


@pytest.mark.parametrize(
    ("spec", "defaults", "other", "shape"),
    [
        ("lenet.yaml", {"classes": 10}, {"classes": 3}, (2, 3, 32, 32)),
        ("unet.yaml", {"classes": 2, "base": 64}, {"classes": 5, "base": 8}, None),
    ],
)
def test_one_generated_class_builds_other_params(
    spec: str, defaults: dict[str, Any], other: dict[str, Any], shape: Any
) -> None:
    loaded = nnspec.load(EXAMPLES / spec)
    cls = loaded.module_class()
    assert _signature(cls) == defaults
    torch.manual_seed(0)
    built = cls(**other)
    reference = nnspec.load(EXAMPLES / spec, params=other).build()
    x = torch.randn(*(shape or (1, 3, 64, 64)))
    _same_model(built, reference, x)
    if spec == "unet.yaml":
        assert built(x).shape == (1, 5, 64, 64)
        assert built.inc.conv2d.out_channels == 8
        assert built.up1.conv.conv2d.in_channels == 8 * 16


def test_defaults_are_the_params_compiled_for() -> None:
    loaded = nnspec.load(EXAMPLES / "unet.yaml", params={"base": 16})
    cls = loaded.module_class()
    assert _signature(cls) == {"classes": 2, "base": 16}
    # build() builds the given configuration: the class called with its defaults.
    built = loaded.build()
    assert built.inc.conv2d.out_channels == 16
    assert "def __init__(self, *, classes: int = 2, base: int = 16)" in (
        loaded.source()
    )
    assert "Down(in_channels=base, out=base * 2)" in loaded.source()


def test_a_param_computed_from_others_follows_them() -> None:
    text = """\
nnspec: 1
name: Net
params: {width: 8, hidden: "${width * 2}"}
inputs: {x: [4]}
layers:
  - {op: Linear, out_features: "${hidden}"}
  - {op: Linear, out_features: "${width}"}
"""
    cls = nnspec.loads(text).module_class()
    assert _signature(cls) == {"width": 8}
    built = cls(width=3)
    assert built.linear.out_features == 6 and built.linear_1.out_features == 3
    reference = nnspec.loads(text, params={"width": 3}).build()
    _same_model(built, reference, torch.randn(2, 4))


REPEATED = """\
nnspec: 1
name: Net
params: {depth: 3, width: 8, sizes: [4, 4]}
inputs: {x: [4]}
layers:
  - {op: Linear, out_features: "${width * (i + 1)}", repeat: "${depth}"}
  - {op: Linear, out_features: "${sizes[0]}"}
"""


def test_a_count_whose_copies_differ_stays_fixed() -> None:
    loaded = nnspec.loads(REPEATED)
    cls = loaded.module_class()
    # depth is a count the class writes out copy by copy, sizes a list: fixed.
    assert _signature(cls) == {"width": 8}
    built = cls(width=2)
    assert [m.out_features for m in built.linear] == [2, 4, 6]
    reference = nnspec.loads(REPEATED, params={"width": 2}).build()
    _same_model(built, reference, torch.randn(2, 4))
    assert len(nnspec.loads(REPEATED, params={"depth": 2}).build().linear) == 2


def test_a_count_of_alike_copies_is_honoured() -> None:
    text = """\
nnspec: 1
name: Net
params: {depth: 3, width: 8}
inputs: {x: [8]}
layers:
  - {op: Linear, out_features: "${width}", repeat: "${depth}"}
"""
    cls = nnspec.loads(text).module_class()
    assert _signature(cls) == {"depth": 3, "width": 8}
    assert len(cls(depth=1).linear) == 1
    assert len(cls(depth=4).linear) == 4
    assert cls(depth=4, width=5)(torch.randn(2, 8)).shape == (2, 5)
    reference = nnspec.loads(text, params={"width": 8, "depth": 3}).build()
    _same_model(cls(), reference, torch.randn(2, 8))


def test_unused_params_are_not_arguments() -> None:
    text = """\
nnspec: 1
name: Net
params: {classes: 3, unused: 7}
inputs: {x: [4]}
layers:
  - {op: Linear, out_features: "${classes}"}
"""
    assert _signature(nnspec.loads(text).module_class()) == {"classes": 3}


def test_summary_shows_the_constructor_call() -> None:
    summary = nnspec.load(EXAMPLES / "unet.yaml", params={"classes": 3}).summary()
    assert summary.call == "UNet(classes=3, base=64)"
    assert "  built  UNet(classes=3, base=64)" in summary.render().splitlines()
    assert summary.to_dict()["call"] == "UNet(classes=3, base=64)"


UNSHUFFLED = """\
nnspec: 1
name: Net
params: {width: 4, classes: 3}
inputs: {x: [3, 8, 8]}
layers:
  - {op: PixelUnshuffle, downscale_factor: 2}
  - {op: Conv2d, out_channels: "${width}", kernel_size: 1}
  - {op: %s}
  - Flatten
  - {op: Linear, out_features: "${classes}"}
"""


def test_sizes_found_on_meta_from_literals_are_literals() -> None:
    # PixelUnshuffle has no closed-form rule: its output, from the declared input
    # alone, is a literal size all the same, and the params stay arguments.
    text = UNSHUFFLED % "MaxPool2d, kernel_size: 2"
    cls = nnspec.loads(text).module_class()
    assert _signature(cls) == {"width": 4, "classes": 3}
    assert "nn.Conv2d(12, width, kernel_size=1)" in nnspec.loads(text).source()
    built = cls(width=6, classes=2)
    reference = nnspec.loads(text, params={"width": 6, "classes": 2}).build()
    _same_model(built, reference, torch.randn(2, 3, 8, 8))


def test_a_size_the_params_cannot_express_leaves_no_arguments() -> None:
    # After a param, PixelUnshuffle's output is known only as a number: a class
    # taking ``width`` would build 64 inputs for the Linear whatever it is given.
    text = UNSHUFFLED % "PixelUnshuffle, downscale_factor: 2"
    loaded = nnspec.loads(text)
    assert _signature(loaded.module_class()) == {}
    assert "nn.Linear(64, 3)" in loaded.source()
    assert loaded.build().linear.in_features == 64


def test_a_pooled_map_keeps_a_block_s_sizes() -> None:
    text = """\
nnspec: 1
name: Net
params: {width: 4, classes: 3}
inputs: {x: [3, 8, 8]}
blocks:
  Head:
    params: {classes: {type: int}}
    layers:
      - {op: AdaptiveAvgPool2d, output_size: 1}
      - Flatten
      - {op: Linear, out_features: "${classes}"}
layers:
  - {op: Conv2d, out_channels: "${width}", kernel_size: 3, padding: 1}
  - {op: Head, name: head, classes: "${classes}"}
"""
    loaded = nnspec.loads(text)
    source = loaded.source()
    assert "def __init__(self, *, in_channels: int, classes: int)" in source
    assert "nn.Linear(in_channels, classes)" in source
    built = loaded.module_class()(width=7, classes=5)
    assert built.head.linear.in_features == 7
    reference = nnspec.loads(text, params={"width": 7, "classes": 5}).build()
    _same_model(built, reference, torch.randn(2, 3, 8, 8))


def test_a_derived_spec_s_params_are_the_defaults(tmp_path: Path) -> None:
    base = (EXAMPLES / "lenet.yaml").read_text(encoding="utf-8")
    (tmp_path / "lenet.yaml").write_text(base, encoding="utf-8")
    derived = tmp_path / "small.yaml"
    derived.write_text(
        "nnspec: 1\nextends: lenet.yaml\nname: Small\nparams: {classes: 4}\n",
        encoding="utf-8",
    )
    cls = nnspec.load(derived).module_class()
    assert cls.__name__ == "Small"
    assert _signature(cls) == {"classes": 4}
    assert cls().fc3.out_features == 4 and cls(classes=7).fc3.out_features == 7


@pytest.mark.parametrize("name", ["self", "nn", "range", "Net", "F"])
def test_a_param_named_as_a_name_init_reads_stays_fixed(name: str) -> None:
    text = (
        f"nnspec: 1\nname: Net\nparams: {{{name}: 3, width: 5}}\ninputs: {{x: [4]}}\n"
        f'layers:\n  - {{op: Linear, out_features: "${{{name} + width}}"}}\n'
    )
    loaded = nnspec.loads(text)
    assert _signature(loaded.module_class()) == {"width": 5}
    assert "nn.Linear(4, 3 + width)" in loaded.source()
    assert loaded.module_class()(width=1).linear.out_features == 4


INIT = """\
nnspec: 1
name: Net
params: {depth: 3, width: 8, std: 0.5}
inputs: {x: [8]}
blocks:
  Stack:
    params: {n: {type: int}}
    layers:
      - {op: Linear, name: fcs, out_features: 8, repeat: "${n}"}
layers:
  - {op: Linear, name: body, out_features: "${width}", repeat: "${depth}"}
  - {op: Stack, name: stack, n: "${depth}"}
  - {op: Dropout, p: "${std}"}
init:
  - {match: "body.*", weight: {normal: {std: "${std}"}}}
freeze: ["body.2"]
"""


def test_init_and_freeze_rules_fix_the_params_they_depend_on() -> None:
    # The rules name the copies compiled for (body.2) and hold the literal std:
    # depth (a count, here and through the block) and std stay literals.
    loaded = nnspec.loads(INIT)
    cls = loaded.module_class()
    assert _signature(cls) == {"width": 8}
    built = cls(width=4)
    assert [m.out_features for m in built.body] == [4, 4, 4]
    assert not built.body[2].weight.requires_grad
    reference = nnspec.loads(INIT, params={"width": 4}).build()
    _same_model(built, reference, torch.randn(2, 8))
    # Without the rules, both are arguments.
    free = INIT.split("init:")[0]
    assert _signature(nnspec.loads(free).module_class()) == {
        "depth": 3,
        "width": 8,
        "std": 0.5,
    }
    assert len(nnspec.loads(free).module_class()(depth=1).stack.fcs) == 1
