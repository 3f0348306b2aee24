"""``seq``: a node that is an ``nn.Sequential`` of its children, chained in order."""

from __future__ import annotations

import itertools
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import nnspec
from nnspec.inspection.graph_render import build_diagram, to_mermaid
from nnspec.spec import SpecError

# -- a ResNet-like stage: the first block differs --------------------------------

STAGE = """\
nnspec: 1
name: Stage
inputs: {x: [8, 8, 8]}
blocks:
  Basic:
    params: {out: 8, stride: 1}
    layers:
      - {op: Conv2d, name: conv1, out_channels: "${out}", kernel_size: 3,
         stride: "${stride}", padding: 1, bias: false}
      - {op: BatchNorm2d, name: bn1}
      - {op: ReLU, name: relu}
layers:
  - name: layer1
    seq:
      - {op: Basic, out: 16, stride: 2}
      - {op: Basic, out: 16, repeat: 2}
  - {op: Flatten, name: flatten}
"""


class _Basic(nn.Module):
    def __init__(self, in_channels: int, out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))


class _Stage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(_Basic(8, 16, 2), _Basic(16, 16), _Basic(16, 16))
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.layer1(x))


def _same_as(spec: nnspec.Spec, reference: nn.Module, x: torch.Tensor) -> None:
    """The compiled model has the reference's state_dict keys and shapes, and with
    the reference's weights loaded (strictly, by key) computes the same output."""
    model = spec.build().eval()
    reference.eval()
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs
    with torch.no_grad():
        for p in reference.parameters():
            p.uniform_(-0.5, 0.5)
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        assert_close(model(x), reference(x))


def test_a_stage_whose_first_block_differs_is_one_sequential() -> None:
    spec = nnspec.loads(STAGE)
    source = spec.source(comments=False)
    assert (
        "        self.layer1 = nn.Sequential(\n"
        "            Basic(in_channels=8, out=16, stride=2),\n"
        "            Basic(in_channels=16, out=16),\n"
        "            Basic(in_channels=16, out=16),\n"
        "        )\n"
    ) in source
    assert "x = self.layer1(x)" in source
    _same_as(spec, _Stage(), torch.randn(2, 8, 8, 8))
    keys = spec.build().state_dict()
    assert "layer1.2.conv1.weight" in keys


# -- DenseNet-like named children ---------------------------------------------------

FEATURES = """\
nnspec: 1
name: Features
inputs: {x: [3, 8, 8]}
layers:
  - name: features
    seq:
      - {op: Conv2d, name: conv0, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
      - {op: BatchNorm2d, name: norm0}
      - ReLU
      - {op: Conv2d, name: "denselayer${i + 1}", out_channels: 4, kernel_size: 1, repeat: 2}
      - {op: BatchNorm2d, name: norm5}
"""


def _features() -> nn.Module:
    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                OrderedDict(
                    [
                        ("conv0", nn.Conv2d(3, 4, 3, padding=1, bias=False)),
                        ("norm0", nn.BatchNorm2d(4)),
                        ("2", nn.ReLU()),
                        ("denselayer1", nn.Conv2d(4, 4, 1)),
                        ("denselayer2", nn.Conv2d(4, 4, 1)),
                        ("norm5", nn.BatchNorm2d(4)),
                    ]
                )
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x)

    return Features()


def test_named_children_are_keyed_as_written_the_others_by_position() -> None:
    spec = nnspec.loads(FEATURES)
    source = spec.source(comments=False)
    assert source.startswith('"""') or source.startswith("#")
    assert "from collections import OrderedDict\n" in source
    assert (
        "        self.features = nn.Sequential(\n"
        "            OrderedDict(\n"
        "                [\n"
        '                    ("conv0", nn.Conv2d(3, 4, kernel_size=3, padding=1, '
        "bias=False)),\n"
        '                    ("norm0", nn.BatchNorm2d(4)),\n'
        '                    ("2", nn.ReLU()),\n'
        '                    ("denselayer1", nn.Conv2d(4, 4, kernel_size=1)),\n'
        '                    ("denselayer2", nn.Conv2d(4, 4, kernel_size=1)),\n'
        '                    ("norm5", nn.BatchNorm2d(4)),\n'
        "                ],\n"
        "            ),\n"
        "        )\n"
    ) in source
    _same_as(spec, _features(), torch.randn(2, 3, 8, 8))


def test_a_spec_without_named_children_imports_no_ordered_dict() -> None:
    assert "OrderedDict" not in nnspec.loads(STAGE).source()


# -- nested seqs --------------------------------------------------------------------

NESTED = """\
nnspec: 1
name: Nested
inputs: {x: [6]}
layers:
  - name: body
    seq:
      - {op: Linear, out_features: 5}
      - seq: [{op: Linear, out_features: 4}, ReLU]
      - seq: [{op: Linear, out_features: 4}, Tanh]
        repeat: 2
      - {op: Linear, out_features: 2}
"""


def test_nested_seqs_are_numbered_like_the_others() -> None:
    spec = nnspec.loads(NESTED)
    source = spec.source(comments=False)
    assert (
        "        self.body = nn.Sequential(\n"
        "            nn.Linear(6, 5),\n"
        "            nn.Sequential(nn.Linear(5, 4), nn.ReLU()),\n"
        "            nn.Sequential(nn.Linear(4, 4), nn.Tanh()),\n"
        "            nn.Sequential(nn.Linear(4, 4), nn.Tanh()),\n"
        "            nn.Linear(4, 2),\n"
        "        )\n"
    ) in source

    class Reference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(6, 5),
                nn.Sequential(nn.Linear(5, 4), nn.ReLU()),
                nn.Sequential(nn.Linear(4, 4), nn.Tanh()),
                nn.Sequential(nn.Linear(4, 4), nn.Tanh()),
                nn.Linear(4, 2),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    _same_as(spec, Reference(), torch.randn(3, 6))


# -- a seq inside a block, with symbolic sizes ----------------------------------------

DOUBLE_CONV = """\
nnspec: 1
name: Net
inputs: {x: [3, 8, 8]}
blocks:
  DoubleConv:
    params: {out: 8, mid: 8}
    layers:
      - name: double_conv
        seq:
          - {op: Conv2d, out_channels: "${mid}", kernel_size: 3, padding: 1, bias: false}
          - BatchNorm2d
          - ReLU
          - {op: Conv2d, out_channels: "${out}", kernel_size: 3, padding: 1, bias: false}
          - BatchNorm2d
          - ReLU
layers:
  - {op: DoubleConv, name: inc, out: 8, mid: 4}
  - {op: DoubleConv, name: down, out: 16, mid: 16}
"""


def _double_conv(in_channels: int, out: int, mid: int) -> nn.Module:
    class DoubleConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.double_conv = nn.Sequential(
                nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(),
                nn.Conv2d(mid, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.double_conv(x)

    return DoubleConv()


def test_a_seq_in_a_block_is_written_in_the_blocks_arguments() -> None:
    spec = nnspec.loads(DOUBLE_CONV)
    source = spec.source(comments=False)
    assert (
        "        self.double_conv = nn.Sequential(\n"
        "            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),\n"
        "            nn.BatchNorm2d(mid),\n"
        "            nn.ReLU(),\n"
        "            nn.Conv2d(mid, out, kernel_size=3, padding=1, bias=False),\n"
        "            nn.BatchNorm2d(out),\n"
        "            nn.ReLU(),\n"
        "        )\n"
    ) in source
    assert "        return self.double_conv(x)\n" in source
    assert source.count("class DoubleConv(nn.Module)") == 1

    class Reference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inc = _double_conv(3, 8, 4)
            self.down = _double_conv(8, 16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(self.inc(x))

    _same_as(spec, Reference(), torch.randn(2, 3, 8, 8))


COUNTED = """\
nnspec: 1
name: Net
inputs: {x: [4]}
blocks:
  Stack:
    params: {width: 8, depth: 3}
    layers:
      - name: layers
        seq:
          - {op: Linear, out_features: "${width}", repeat: "${depth}"}
          - Tanh
layers:
  - {op: Stack, name: stack, depth: 3}
"""


def test_a_repeated_child_counted_by_a_param_is_built_by_a_generator() -> None:
    spec = nnspec.loads(COUNTED)
    source = spec.source(comments=False)
    assert (
        "        self.layers = nn.Sequential(\n"
        "            nn.Linear(in_features, width),\n"
        "            *(nn.Linear(width, width) for _ in range(depth - 1)),\n"
        "            nn.Tanh(),\n"
        "        )\n"
    ) in source
    module = sys.modules[spec.module_class().__module__]
    stack = module.Stack(in_features=4, depth=5)
    assert len(stack.layers) == 6  # the signature does not lie: 5 Linears and a Tanh
    keys = list(spec.build().state_dict())
    assert keys == [
        f"stack.layers.{k}.{p}" for k in range(3) for p in ("weight", "bias")
    ]


# -- paths: init and freeze rules, weights -----------------------------------------------


def test_init_and_freeze_reach_children_by_path_and_glob() -> None:
    text = STAGE + (
        "init:\n"
        "  - {match: layer1.0.conv1, weight: ones}\n"
        '  - {match: "layer1.2.*", weight: zeros}\n'
        'freeze: ["layer1.1"]\n'
    )
    model = nnspec.loads(text).build()
    assert torch.equal(
        model.layer1[0].conv1.weight, torch.ones_like(model.layer1[0].conv1.weight)
    )
    assert not model.layer1[2].conv1.weight.any()
    assert not model.layer1[2].bn1.weight.any()
    assert model.layer1[1].conv1.weight.abs().sum() > 0
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        "layer1.1.conv1.weight",
        "layer1.1.bn1.weight",
        "layer1.1.bn1.bias",
    }


def test_init_reaches_named_children() -> None:
    text = (
        FEATURES + 'init:\n  - {match: "features.denselayer*", bias: {constant: 0.5}}\n'
    )
    model = nnspec.loads(text).build()
    for name in ("denselayer1", "denselayer2"):
        assert torch.equal(getattr(model.features, name).bias, torch.full((4,), 0.5))


def test_weights_on_a_seq_node_load_its_state_dict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reference = _Stage()
    with torch.no_grad():
        for p in reference.parameters():
            p.uniform_(-1, 1)
    torch.save(reference.layer1.state_dict(), tmp_path / "layer1.pt")
    (tmp_path / "stage.yaml").write_text(
        STAGE.replace(
            "  - name: layer1\n", "  - name: layer1\n    weights: {path: layer1.pt}\n"
        )
    )
    model = nnspec.load(tmp_path / "stage.yaml").build()
    for key, value in reference.layer1.state_dict().items():
        assert torch.equal(model.layer1.state_dict()[key], value)


# -- summary, extends ----------------------------------------------------------------------


def test_summary_rows_are_the_children_by_key() -> None:
    summary = nnspec.loads(FEATURES).summary()
    (features,) = summary.rows
    assert features.name == "features"
    assert [r.node for r in features.children] == [
        "conv0",
        "norm0",
        "2",
        "denselayer1",
        "denselayer2",
        "norm5",
    ]
    assert [r.op for r in features.children][:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert features.children[3].inputs == ["2"]
    assert features.params == sum(c.params for c in features.children)


def test_a_derived_spec_replaces_a_seq_node(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "base.yaml").write_text(STAGE)
    (tmp_path / "derived.yaml").write_text(
        "nnspec: 1\n"
        "extends: base.yaml\n"
        "name: Derived\n"
        "replace:\n"
        "  layer1: {name: layer1, seq: [{op: Basic, out: 4, repeat: 3}]}\n"
    )
    model = nnspec.load(tmp_path / "derived.yaml").build()
    assert [type(m).__name__ for m in model.layer1] == ["Basic"] * 3
    assert model.layer1[2].conv1.weight.shape == (4, 4, 3, 3)


def test_a_derived_spec_finds_an_unnamed_seq_by_its_default_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "base.yaml").write_text(
        "nnspec: 1\nname: Base\ninputs: {x: [4]}\n"
        "layers:\n  - seq: [{op: Linear, out_features: 3}, ReLU]\n"
        "  - {op: Linear, out_features: 2}\n"
    )
    (tmp_path / "derived.yaml").write_text(
        "nnspec: 1\nextends: base.yaml\nname: Derived\n"
        "replace:\n  seq: {seq: [{op: Linear, out_features: 5}, Tanh]}\n"
    )
    model = nnspec.load(tmp_path / "derived.yaml").build()
    assert [type(m).__name__ for m in model.seq] == ["Linear", "Tanh"]
    assert model.linear.in_features == 5


# -- errors --------------------------------------------------------------------------------

HEAD = "nnspec: 1\nname: Net\ninputs: {x: [4]}\nlayers:\n"


def _error(layers: str) -> tuple[int, int, str]:
    with pytest.raises(SpecError) as info:
        nnspec.loads(HEAD + layers)
    diagnostic = info.value.diagnostics[0]
    return diagnostic.line, diagnostic.column, diagnostic.message


@pytest.mark.parametrize(
    ("layers", "line", "column", "words"),
    [
        ("  - {name: s, seq: []}\n", 5, 15, ["at least one child"]),
        (
            "  - {name: s, seq: [{op: Linear, out_features: 2}, flatten]}\n",
            5,
            52,
            ["'flatten' is a function", "write Flatten"],
        ),
        (
            "  - {name: s, seq: [{op: Linear, out_features: 2, in: x}]}\n",
            5,
            51,
            ["previous child's output", "give 'in' to the seq node"],
        ),
        (
            "  - {name: s, op: Linear, seq: [ReLU]}\n",
            5,
            15,
            ["either 'seq'", "or 'op'"],
        ),
        (
            "  - {name: s, seq: [{op: ReLU, name: a}, {op: Tanh, name: a}]}\n",
            5,
            59,
            ["duplicate name 'a'", "first at line 5"],
        ),
        (
            "  - {name: s, seq: [{op: ReLU, name: 'a${i}'}]}\n",
            5,
            38,
            ["template", "does not repeat"],
        ),
        (
            "  - {name: s, seq: [{op: ReLU, name: '${i}x', repeat: 2}]}\n",
            5,
            38,
            ["copy 0", "'0x'", "not a lowercase identifier"],
        ),
    ],
)
def test_seq_errors_are_located_and_say_the_fix(
    layers: str, line: int, column: int, words: list[str]
) -> None:
    found = _error(layers)
    assert found[:2] == (line, column), found
    for word in words:
        assert word in found[2], found[2]


def test_the_graph_draws_a_seq_as_a_cluster_of_its_children() -> None:

    text = to_mermaid(build_diagram(nnspec.loads(FEATURES).summary(), depth=2))
    assert 'subgraph n_cluster_features["features: Sequential ×6"]' in text
    for key in ("conv0", "norm0", "2", "denselayer1", "denselayer2", "norm5"):
        assert f"n_features_{key}[" in text
    # Each child is fed by the one before it, the first by the seq's input.
    keys = ["conv0", "norm0", "2", "denselayer1", "denselayer2", "norm5"]
    assert 'n_input_x -->|"[B,3,8,8]"| n_features_conv0' in text
    for a, b in itertools.pairwise(keys):
        assert f'n_features_{a} -->|"[B,4,8,8]"| n_features_{b}' in text
    assert 'n_features_norm5 -->|"[B,4,8,8]"| n_output_features' in text


def test_a_repeated_seq_is_a_sequential_of_sequentials() -> None:
    spec = nnspec.loads(
        HEAD
        + "  - {name: twice, seq: [{op: Linear, out_features: 3}, ReLU], repeat: 2}\n"
    )
    assert (
        "        self.twice = nn.Sequential(\n"
        "            nn.Sequential(nn.Linear(4, 3), nn.ReLU()),\n"
        "            nn.Sequential(nn.Linear(3, 3), nn.ReLU()),\n"
        "        )\n"
    ) in spec.source(comments=False)
    assert list(spec.build().state_dict()) == [
        "twice.0.0.weight",
        "twice.0.0.bias",
        "twice.1.0.weight",
        "twice.1.0.bias",
    ]


def test_named_copies_counted_by_a_param_fix_the_count_in_the_class() -> None:
    spec = nnspec.loads(COUNTED.replace("{op: Linear,", '{op: Linear, name: "fc${i}",'))
    source = spec.source(comments=False)
    # Keys from a template are written out, so the class is built for depth=3 and
    # does not take a depth it would ignore.
    assert "def __init__(self, *, in_features: int, width: int = 8) -> None:" in source
    assert '("fc2", nn.Linear(width, width)),' in source
    assert '("3", nn.Tanh()),' in source
    assert "self.stack = Stack(in_features=4)" in source


def test_a_child_given_a_tuple_is_an_error_at_the_child() -> None:
    line, column, message = _error(
        "  - name: s\n    seq: [{op: LSTM, hidden_size: 4}, ReLU]\n"
    )
    assert (line, column) == (6, 39)
    assert "node 's.1' (ReLU)" in message
    assert "a tuple" in message and "must return one tensor" in message
