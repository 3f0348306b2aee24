"""Every example of the language description compiles, and means what the text says.

The examples are verbatim copies. The whole specs (sections 1 and 4) compile as
written; each fragment (sections 5, 6 and 7) compiles inside a spec that supplies what
it names; the Python snippet of section 8 runs as written. The rules stated in prose
(default names, repeat, tuple elements, suggestions) are checked on small specs.
Section 9 derives a spec from the ResNet example, with weights saved from it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import nnspec
from tests.compiler import handwritten
from tests.compiler.examples import copy_weights, load_example, num_params
from tests.conftest import EXAMPLES

# -- verbatim copies ---------------------------------------------------------------------

SECTION_1_LENET = """\
# yaml-language-server: $schema=../schemas/nnspec.schema.json
nnspec: 1                 # format version, required
name: LeNet               # class name of the generated nn.Module (CapWords identifier)
doc: LeNet-5 for 32x32 RGB images.
params:                   # named values for expressions; overridable at compile time
  classes: 10
inputs:                   # named inputs; shapes exclude the batch dimension
  x: [3, 32, 32]
layers:                   # the forward graph, in order
  - {op: Conv2d, name: conv1, out_channels: 6, kernel_size: 5}
  - ReLU
  - {op: MaxPool2d, kernel_size: 2}
  - {op: Conv2d, name: conv2, out_channels: 16, kernel_size: 5}
  - ReLU
  - {op: MaxPool2d, kernel_size: 2}
  - Flatten
  - {op: Linear, name: fc1, out_features: 120}
  - ReLU
  - {op: Linear, name: fc2, out_features: 84}
  - ReLU
  - {op: Linear, name: fc3, out_features: "${classes}"}
# outputs: fc3            # default: the last node
"""


SECTION_4_TWO_HEADS = """\
nnspec: 1
name: TwoHeads
inputs:
  x: [512]
  extra: [1]                      # an extra input, joined in before the classifier
layers:
  - {op: Linear, name: trunk, out_features: 256}
  - ReLU
  - {op: Linear, name: shared, out_features: 256}
  - {op: add, name: res, in: [shared, trunk]}      # skip connection
  - {use: shared, name: again}                      # the same Linear again: weights tied
  - {op: Dropout, p: 0.5}
  - {op: cat, name: joined, in: [dropout, extra], dim: 1}
  - {op: Linear, name: head, out_features: 10}
outputs:                          # a mapping: forward returns a dict; a list: a tuple
  logits: head
  features: trunk                 # an intermediate output, e.g. for extra supervision
"""


SECTION_6_BLOCKS = """\
blocks:
  DoubleConv:
    doc: (convolution => BN => ReLU) * 2
    params:
      out: {type: int}            # required: no default
      mid: null                   # default None
    layers:
      - {op: Conv2d, out_channels: "${mid or out}", kernel_size: 3, padding: 1, bias: false}
      - BatchNorm2d
      - {op: ReLU, inplace: true}
      - {op: Conv2d, out_channels: "${out}", kernel_size: 3, padding: 1, bias: false}
      - BatchNorm2d
      - {op: ReLU, inplace: true}
  Up:
    params: {out: {type: int}}
    inputs: [x, skip]             # default: [x]
    layers:
      - {op: Upsample, name: up, in: x, scale_factor: 2, mode: bilinear, align_corners: true}
      - {op: cat, in: [skip, up], dim: 1}
      - {op: DoubleConv, name: conv, out: "${out}", mid: "${cat.shape[1] // 2}"}
"""


SECTION_7_INIT_FREEZE = """\
init:                              # later rules win
  - {match: Conv2d, weight: xavier_normal, bias: {constant: 0.3}}
  - {match: Linear, weight: {normal: {mean: 0.0, std: 0.01}}, bias: zeros}
  - {match: BatchNorm2d, weight: ones, bias: zeros}
  - {match: "head*", weight: {kaiming_normal: {nonlinearity: relu}}}
freeze: ["trunk", "down*"]
"""


SECTION_8_PYTHON = """\
import nnspec
spec = nnspec.load("unet.yaml", params={"base": 32})   # parse + validate; SpecError on failure
model = spec.build()        # an instance of the generated class
source = spec.source()      # the generated Python source
spec = nnspec.loads(yaml_text)                       # the same from a string
"""


SECTION_9_EXTENDS = """\
nnspec: 1
extends: resnet_small.yaml        # relative to this file; chains allowed, cycles an error
name: ResNetTenClasses
params: {classes: 10}             # overrides the base's params
replace:                          # a node of the base, by name -> its new definition
  fc: {op: Linear, name: fc, out_features: 256}
insert_after:
  fc: [ReLU, {op: Dropout, p: 0.5}, {op: Linear, name: head, out_features: "${classes}"}]
remove: [dropout_1]               # also insert_before
weights: {path: resnet_small.safetensors, strict: false}   # load what matches, report the rest
freeze: ["layer*"]
outputs: {logits: head, features: avgpool}
"""

# Section 5, the example of a shape error (its position is that of a node in unet.yaml).
SECTION_5_SHAPE_ERROR = (
    "unet.yaml:41:7: error: node 'cat' (cat, dim=1): input shapes [B,64,32,32] and "
    "[B,64,31,31] differ in dim 3"
)
# Section 6, the use of a block in the text.
SECTION_6_UP_USE = "{op: Up, name: up1, in: [down4, down3], out: 256}"


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of ``needle`` in ``text``."""
    before = text[: text.index(needle)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def _errors(text: str, **kwargs: object) -> nnspec.SpecError:
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(text, path="spec.yaml", **kwargs)  # type: ignore[arg-type]
    return info.value


# -- section 1 ---------------------------------------------------------------------------


def test_section_1_compiles_as_written() -> None:
    spec = nnspec.loads(SECTION_1_LENET, path="lenet.yaml")
    model = spec.build()
    assert type(model).__name__ == "LeNet"
    assert inspect.getdoc(model) == "LeNet-5 for 32x32 RGB images."
    # The same network as examples/lenet.yaml, which adds only comments.
    example = load_example("lenet").build()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in example.state_dict().items()
    ]
    reference = handwritten.LeNet()
    copy_weights(reference, model)
    x = torch.randn(2, 3, 32, 32)
    assert_close(model(x), reference(x))


def test_section_1_params_are_overridable() -> None:
    model = nnspec.loads(SECTION_1_LENET, params={"classes": 4}).build()
    assert model.fc3.out_features == 4
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


# -- section 2 ---------------------------------------------------------------------------


def test_section_2_default_names() -> None:
    text = """\
nnspec: 1
name: Names
inputs: {x: [4, 8, 8]}
blocks:
  DoubleConv:
    layers: [{op: Conv2d, out_channels: 4, kernel_size: 1}]
layers:
  - BatchNorm2d
  - ReLU
  - {op: MaxPool2d, kernel_size: 1}
  - DoubleConv
  - {op: cat, in: [x, double_conv], dim: 1}
  - BatchNorm2d
  - ReLU
  - ReLU
"""
    spec = nnspec.loads(text)
    assert [name for name, _ in spec.build().named_children()] == [
        "batch_norm2d",
        "relu",
        "max_pool2d",
        "double_conv",
        "batch_norm2d_1",
        "relu_1",
        "relu_2",
    ]
    assert [call.node for call in spec.compiled.model.calls][4] == "cat"


def test_section_2_repeat_with_copy_index() -> None:
    text = """\
nnspec: 1
name: Repeated
inputs: {x: [4]}
layers:
  - {op: Linear, name: grow, out_features: "${8 * (i + 1)}", repeat: 3}
  - {op: mul, args: [2.0], repeat: 2}
"""
    model = nnspec.loads(text).build()
    assert isinstance(model.grow, nn.Sequential)
    assert [(m.in_features, m.out_features) for m in model.grow] == [
        (4, 8),
        (8, 16),
        (16, 24),
    ]
    x = torch.randn(3, 4)
    assert_close(model(x), model.grow(x) * 4.0)


def test_section_2_tuple_elements_by_index() -> None:
    text = """\
nnspec: 1
name: Halves
inputs: {x: [8, 5]}
layers:
  - {op: LSTM, hidden_size: 6, batch_first: true}
  - {op: chunk, in: lstm.0, chunks: 2, dim: 2}
  - {op: mul, in: [chunk.0, chunk.1]}
"""
    model = nnspec.loads(text).build()
    x = torch.randn(2, 8, 5)
    out, _ = model.lstm(x)
    assert_close(model(x), out[..., :3] * out[..., 3:])


# -- section 3 ---------------------------------------------------------------------------


def test_section_3_unknown_argument_suggests_the_right_one() -> None:
    text = """\
nnspec: 1
name: Typo
inputs: {x: [3, 8, 8]}
layers:
  - {op: Conv2d, out_channels: 4, kernal_size: 3}
"""
    error = _errors(text)
    assert (error.line, error.column) == _position(text, "kernal_size")
    assert "'kernal_size'" in error.message
    assert "(did you mean 'kernel_size'?)" in error.message


def test_section_3_custom_module_needs_its_package_allowed() -> None:
    text = """\
nnspec: 1
name: Custom
inputs: {x: [4]}
layers:
  - {op: "mypackage.layers:Fancy", width: 3}
"""
    error = _errors(text)
    assert (error.line, error.column) == _position(text, '"mypackage')
    assert "'mypackage'" in error.message
    assert "--allow-import mypackage" in error.message


# -- section 4 ---------------------------------------------------------------------------


def test_section_4_compiles_as_written() -> None:
    spec = nnspec.loads(SECTION_4_TWO_HEADS, path="two_heads.yaml")
    model = spec.build()
    assert list(inspect.signature(model.forward).parameters) == ["x", "extra"]
    reference = handwritten.TwoHeads()
    copy_weights(reference, model)
    assert num_params(model) == num_params(reference)
    model.eval()
    reference.eval()
    x, extra = torch.randn(3, 512), torch.randn(3, 1)
    out = model(x, extra)
    assert list(out) == ["logits", "features"]
    assert_close(out, reference(x, extra))


def test_section_4_shared_layer_ties_weights() -> None:
    model = nnspec.loads(SECTION_4_TWO_HEADS).build()
    assert [name for name, _ in model.named_children()] == [
        "trunk",
        "relu",
        "shared",
        "dropout",
        "head",
    ]
    model.eval()
    x, extra = torch.randn(2, 512), torch.randn(2, 1)
    model(x, extra)["logits"].sum().backward()
    reference = handwritten.TwoHeads()
    copy_weights(model, reference)
    reference.eval()
    reference(x, extra)["logits"].sum().backward()
    assert_close(model.shared.weight.grad, reference.shared.weight.grad)


def test_section_4_outputs_list_gives_a_tuple() -> None:
    text = SECTION_4_TWO_HEADS.split("outputs:")[0] + "outputs: [head, trunk]\n"
    model = nnspec.loads(text).build().eval()
    out = model(torch.randn(2, 512), torch.randn(2, 1))
    assert isinstance(out, tuple)
    assert [t.shape for t in out] == [(2, 10), (2, 256)]


# -- section 5 ---------------------------------------------------------------------------

EXPRESSIONS = """\
nnspec: 1
name: Expressions
params: {a: 7, b: 2, flag: true, sizes: [4, 8], kind: linear}
inputs: {x: [3, 4, 4]}
layers:
  - {op: Upsample, scale_factor: 2, mode: "bi${kind}", align_corners: false}
  - Flatten
  - {op: Linear, name: add, out_features: "${a + b}"}
  - {op: Linear, name: sub, out_features: "${a - b}"}
  - {op: Linear, name: mul, out_features: "${a * b}"}
  - {op: Linear, name: floordiv, out_features: "${a // b}"}
  - {op: Linear, name: mod, out_features: "${a % b}"}
  - {op: Linear, name: power, out_features: "${b ** 3}"}
  - {op: Linear, name: div, out_features: "${int(a / b)}"}
  - {op: Linear, name: cond, out_features: "${a if flag else b}"}
  - {op: Linear, name: minmax, out_features: "${min(a, b) + max(a, b)}"}
  - {op: Linear, name: absolute, out_features: "${abs(b - a)}"}
  - {op: Linear, name: rounded, out_features: "${round(a / b + 0.1)}"}
  - {op: Linear, name: length, out_features: "${len(sizes)}"}
  - {op: Linear, name: logic, out_features: "${1 if a > b and not flag or b == 2 else 0}"}
  - {op: Linear, name: compare, out_features: "${3 if a >= 7 and b != 2 or a <= b else 4}"}
  - {op: Linear, name: shapes, out_features: "${x.shape[1] * length.shape[1]}"}
"""


def test_section_5_expressions() -> None:
    model = nnspec.loads(EXPRESSIONS).build()
    widths = {
        n: m.out_features for n, m in model.named_children() if isinstance(m, nn.Linear)
    }
    assert widths == {
        "add": 9,
        "sub": 5,
        "mul": 14,
        "floordiv": 3,
        "mod": 1,
        "power": 8,
        "div": 3,
        "cond": 7,
        "minmax": 9,
        "absolute": 5,
        "rounded": 4,
        "length": 2,
        "logic": 1,
        "compare": 4,
        "shapes": 6,
    }
    assert model.upsample.mode == "bilinear"
    assert model.add.in_features == 3 * 8 * 8


def test_section_5_unknown_name_lists_the_names_in_scope() -> None:
    text = EXPRESSIONS.replace('"${a + b}"', '"${a + c}"')
    error = _errors(text)
    assert error.line == _position(text, "${a + c}")[0]
    assert "'c'" in error.message
    for name in ("a", "b", "flag", "sizes", "kind"):
        assert re.search(rf"\b{name}\b", error.message.split("scope")[-1]), name


def test_section_5_batch_size_is_not_a_number() -> None:
    text = EXPRESSIONS.replace('"${x.shape[1] * ', '"${x.shape[0] * ')
    error = _errors(text)
    assert error.line == _position(text, "x.shape[0]")[0]
    assert "batch" in error.message


def test_section_5_shape_error_names_node_line_and_shapes() -> None:
    # The text's example, with dim 2 equal so that only dim 3 differs.
    text = """\
nnspec: 1
name: Mismatch
inputs: {a: [64, 32, 32], b: [64, 32, 31]}
layers:
  - {op: cat, in: [a, b], dim: 1}
"""
    error = _errors(text)
    # The error points at the node's inputs, where the shapes that met come from.
    line, column = _position(text, "[a, b]")
    expected = SECTION_5_SHAPE_ERROR.replace(
        "unet.yaml:41:7", f"spec.yaml:{line}:{column}"
    )
    assert str(error) == expected.replace("[B,64,31,31]", "[B,64,32,31]")


def test_section_5_shape_error_with_the_texts_shapes() -> None:
    # In the text's example dims 2 and 3 both differ; the message names the first.
    text = """\
nnspec: 1
name: Mismatch
inputs: {a: [64, 32, 32], b: [64, 31, 31]}
layers:
  - {op: cat, in: [a, b], dim: 1}
"""
    error = _errors(text)
    expected = SECTION_5_SHAPE_ERROR.partition(": error: ")[2]
    assert error.message == expected.replace("dim 3", "dim 2")


# -- section 6 ---------------------------------------------------------------------------

SECTION_6_SPEC = (
    """\
nnspec: 1
name: Fragment6
inputs:
  x: [3, 32, 32]
"""
    + SECTION_6_BLOCKS
    + """\
layers:
  - {op: DoubleConv, name: inc, out: 16}
  - {op: MaxPool2d, kernel_size: 2}
  - {op: DoubleConv, name: down3, out: 32}
  - {op: MaxPool2d, kernel_size: 2}
  - {op: DoubleConv, name: down4, out: 32}
  - """
    + SECTION_6_UP_USE
    + "\n"
)


class _Fragment6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inc = handwritten.DoubleConv(3, 16)
        self.down3 = handwritten.Down(16, 32)
        self.down4 = handwritten.Down(32, 32)
        self.up1 = handwritten.Up(64, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down3 = self.down3(self.inc(x))
        return self.up1(self.down4(down3), down3)


def test_section_6_blocks_compile_inside_a_spec() -> None:
    spec = nnspec.loads(SECTION_6_SPEC, path="fragment6.yaml")
    model = spec.build().eval()
    reference = _Fragment6().eval()
    copy_weights(reference, model)
    assert num_params(model) == num_params(reference)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert_close(out, reference(x))
    assert out.shape == (2, 256, 16, 16)
    # The mid width is the joined channels halved: (32 + 32) // 2.
    assert model.up1.conv.conv2d.out_channels == 32
    # One class per block, whatever the number of uses.
    source = spec.source()
    assert source.count("class DoubleConv(") == 1
    assert source.count("class Up(") == 1
    assert '"""(convolution => BN => ReLU) * 2"""' in source


def test_section_6_required_block_param() -> None:
    text = SECTION_6_SPEC.replace(
        "{op: DoubleConv, name: inc, out: 16}", "{op: DoubleConv, name: inc}"
    )
    error = _errors(text)
    assert error.line == _position(text, "name: inc}")[0]
    assert "'out'" in error.message


# -- section 7 ---------------------------------------------------------------------------

SECTION_7_SPEC = (
    """\
nnspec: 1
name: Fragment7
inputs:
  x: [3, 16, 16]
layers:
  - {op: Conv2d, name: trunk, out_channels: 8, kernel_size: 3, padding: 1}
  - BatchNorm2d
  - ReLU
  - {op: Conv2d, name: down1, out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
  - Flatten
  - {op: Linear, name: hidden, out_features: 32}
  - ReLU
  - {op: Linear, name: head, out_features: 10}
"""
    + SECTION_7_INIT_FREEZE
)


def test_section_7_init_and_freeze() -> None:
    torch.manual_seed(0)
    model = nnspec.loads(SECTION_7_SPEC).build()
    for conv in (model.trunk, model.down1):
        assert torch.equal(conv.bias, torch.full_like(conv.bias, 0.3))
        fan_in, fan_out = conv.weight[0].numel(), 8 * 9
        xavier = (2.0 / (fan_in + fan_out)) ** 0.5
        assert 0.75 * xavier < conv.weight.std().item() < 1.25 * xavier
    norm = model.batch_norm2d
    assert torch.equal(norm.weight, torch.ones(8))
    assert torch.equal(norm.bias, torch.zeros(8))
    assert 0.008 < model.hidden.weight.std().item() < 0.012
    assert torch.equal(model.hidden.bias, torch.zeros(32))
    # "head*" comes later than the Linear rule, so it wins for head.weight; head.bias
    # keeps the Linear rule's zeros.
    kaiming = (2.0 / 32) ** 0.5
    assert 0.75 * kaiming < model.head.weight.std().item() < 1.25 * kaiming
    assert torch.equal(model.head.bias, torch.zeros(10))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["trunk.weight", "trunk.bias", "down1.weight", "down1.bias"]
    assert (
        "def reset_parameters(self) -> None:" in nnspec.loads(SECTION_7_SPEC).source()
    )


def test_section_7_dotted_globs_reach_into_blocks() -> None:
    spec = load_example("unet", base=4)
    text = (EXAMPLES / "unet.yaml").read_text(encoding="utf-8")
    text += 'init:\n  - {match: "inc.*", weight: ones}\nfreeze: ["down*"]\n'
    model = nnspec.loads(text, params={"base": 4}).build()
    assert torch.equal(
        model.inc.conv2d.weight, torch.ones_like(model.inc.conv2d.weight)
    )
    assert not torch.equal(
        model.up1.conv.conv2d.weight, torch.ones_like(model.up1.conv.conv2d.weight)
    )
    trainable = {
        n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad
    }
    assert trainable == {"inc", "up1", "up2", "up3", "up4", "outc"}
    assert num_params(model) == num_params(spec.build())


# -- section 8 ---------------------------------------------------------------------------


def test_section_8_python_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)
    namespace: dict[str, object] = {"yaml_text": (EXAMPLES / "lenet.yaml").read_text()}
    # The snippet runs as written, in the examples folder.
    code = compile(SECTION_8_PYTHON, "section8", "exec")
    exec(code, namespace)  # the test's own copy of the text, not spec input
    spec = namespace["spec"]
    assert isinstance(spec, nnspec.Spec) and spec.name == "LeNet"
    model = namespace["model"]
    assert type(model).__name__ == "UNet"
    assert model.inc.conv2d.out_channels == 32
    source = namespace["source"]
    assert isinstance(source, str) and "class UNet(nn.Module):" in source


def test_section_8_spec_error_fields() -> None:
    text = "nnspec: 1\nname: Bad\ninputs: {x: [4]}\nlayers:\n  - {op: Lineer}\n"
    error = _errors(text)
    assert (error.path, error.line, error.column) == ("spec.yaml", 5, 10)
    assert str(error) == f"spec.yaml:5:10: error: {error.message}"
    assert "Linear" in error.message


# -- section 9 ---------------------------------------------------------------------------


def test_section_9_extends(tmp_path: Path) -> None:
    import shutil

    from nnspec.runtime.weights import save_weights

    shutil.copy(EXAMPLES / "resnet_small.yaml", tmp_path / "resnet_small.yaml")
    base_spec = nnspec.load(tmp_path / "resnet_small.yaml")
    base = base_spec.build().eval()
    save_weights(base, tmp_path / "resnet_small.safetensors")
    (tmp_path / "derived.yaml").write_text(SECTION_9_EXTENDS)

    spec = nnspec.load(tmp_path / "derived.yaml")
    assert spec.name == "ResNetTenClasses"
    with pytest.warns(UserWarning, match="missing from the file"):
        model = spec.build().eval()
    report = spec.load_reports[0]
    assert "head.weight" in report.missing
    assert {key for key, _, _ in report.mismatched} == {"fc.weight", "fc.bias"}
    # Everything the base had, but fc, is loaded; layer* is frozen, the new head trains.
    base_state = base.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(("fc.", "head.")):
            continue
        torch.testing.assert_close(value, base_state[key], rtol=0, atol=0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("layer")}
    assert model.head.weight.requires_grad and model.fc.weight.requires_grad
    assert model.fc.out_features == 256 and model.head.out_features == 10
    # dropout_1 of the base (before fc) is gone; ReLU, Dropout and head follow fc.
    names = [name for name, _ in model.named_children()]
    assert names[names.index("embed") :] == [
        "embed", "relu_1", "fc", "relu_2", "dropout_1", "head",
    ]  # fmt: skip
    assert model.dropout_1.p == 0.5
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert set(out) == {"logits", "features"}
    assert out["logits"].shape == (2, 10)
    # The features come from the loaded backbone: the base computes the same ones.
    seen = []
    base.avgpool.register_forward_hook(lambda module, args, result: seen.append(result))
    base(x)
    torch.testing.assert_close(out["features"], seen[0])
