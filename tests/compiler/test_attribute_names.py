"""Node names as the reference library spells its attributes (``LayerNorm``, ``self``),
the locals of forward that hold their values, and params kept apart from node names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nnspec.compiler.names import local_name, node_name_problem
from tests.helpers import compile_text, expect_error

BERT_LIKE = """\
params: {hidden: 16}
inputs: {x: [5, 16]}
blocks:
  SelfAttention:
    params: {hidden: 16}
    inputs: [h]
    layers:
      - {op: Linear, name: query, in: h, out_features: "${hidden}"}
      - {op: Linear, name: key, in: h, out_features: "${hidden}"}
      - {op: Linear, name: value, in: h, out_features: "${hidden}"}
      - {op: transpose, name: keys_t, in: key, args: [-2, -1]}
      - {op: matmul, name: scores, in: [query, keys_t]}
      - {op: softmax, name: probs, dim: -1}
      - {op: matmul, in: [probs, value]}
  SelfOutput:
    params: {hidden: 16}
    inputs: [h, residual]
    layers:
      - {op: Linear, name: dense, in: h, out_features: "${hidden}"}
      - {op: add, in: [dense, residual]}
      - {op: LayerNorm, name: LayerNorm}
  Attention:
    params: {hidden: 16}
    inputs: [h]
    layers:
      - {op: SelfAttention, name: self, in: h, hidden: "${hidden}"}
      - {op: SelfOutput, name: output, in: [self, h], hidden: "${hidden}"}
layers:
  - {op: Attention, name: attention, hidden: "${hidden}"}
  - {op: Linear, name: dense, out_features: 32}
  - {op: gelu, name: self}
  - {op: Linear, name: out, in: self, out_features: "${hidden}"}
  - {op: add, name: sum, in: [out, attention]}
  - {op: LayerNorm, name: LayerNorm}
"""


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = self.query(h) @ self.key(h).transpose(-2, -1)
        return scores.softmax(dim=-1) @ self.value(h)


class _SelfOutput(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.self = _SelfAttention(hidden)
        self.output = _SelfOutput(hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(h), h)


class _Layer(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.attention = _Attention(hidden)
        self.dense = nn.Linear(hidden, 32)
        self.out = nn.Linear(32, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.attention(x)
        hidden = self.out(nn.functional.gelu(self.dense(attention)))
        return self.LayerNorm(hidden + attention)


def test_a_bert_like_layer_has_the_reference_keys_and_outputs() -> None:
    spec = compile_text(BERT_LIKE)
    model = spec.build().eval()
    reference = _Layer().eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    assert "attention.self.query.weight" in model.state_dict()
    assert "attention.output.LayerNorm.bias" in model.state_dict()
    for value in reference.state_dict().values():
        value.normal_()  # LayerNorm's ones and zeros would hide a swapped weight
    model.load_state_dict(reference.state_dict())
    x = torch.randn(3, 5, 16)
    assert_close(model(x), reference(x))


def test_attribute_names_are_kept_and_locals_are_sanitised() -> None:
    source = compile_text(BERT_LIKE).source()
    assert "        self.self = SelfAttention(" in source
    assert "        self.LayerNorm = nn.LayerNorm(hidden)" in source
    assert "        self.output = SelfOutput(" in source
    # A function node called ``self`` is held in ``self_`` where forward needs a
    # local for it; a module node's local is its name in snake case.
    assert "        x = self.self(h)" in source
    assert "        return self.LayerNorm(x)" in source


def test_locals_of_names_that_cannot_be_locals_are_distinct() -> None:
    body = """\
    inputs: {x: [8]}
    layers:
      - {op: Linear, name: self, out_features: 8}
      - {op: Linear, name: LayerNorm, out_features: 8}
      - {op: add, name: output, in: [self, LayerNorm]}
      - {op: add, name: layer_norm, in: [output, LayerNorm]}
      - {op: mul, name: torch, in: [layer_norm, self]}
      - {op: add, name: input, in: [torch, layer_norm]}
    outputs: [torch, input]
    """
    spec = compile_text(body)
    source = spec.source()
    assert "        self_ = self.self(x)" in source
    # ``layer_norm`` is a node's own name: the LayerNorm node's local steps aside.
    assert "        layer_norm_1 = self.LayerNorm(self_)" in source
    assert "        layer_norm = torch.add(x, layer_norm_1)" in source
    assert "        torch_ = torch.mul(layer_norm, self_)" in source
    assert "        input_ = torch.add(torch_, layer_norm)" in source
    assert "        return torch_, input_" in source
    model = spec.build()
    x = torch.randn(2, 8)
    a = model.self(x)
    b = model.LayerNorm(a)
    c = (a + b) + b
    d = c * a
    got = model(x)
    assert_close(got[0], d)
    assert_close(got[1], d + c)


def test_a_param_does_not_rename_the_node_of_the_same_name() -> None:
    body = """\
    params: {dropout: 0.25, linear: 3}
    inputs: {x: [8]}
    layers:
      - {op: Linear, out_features: "${linear}"}
      - {op: Dropout, p: "${dropout}"}
      - {op: Dropout, p: 0.5}
    """
    model = compile_text(body).build()
    names = [name for name, _ in model.named_children()]
    assert names == ["linear", "dropout", "dropout_1"]
    assert model.dropout.p == 0.25 and model.linear.out_features == 3


def test_a_block_param_and_a_node_share_a_name() -> None:
    body = """\
    inputs: {x: [8]}
    blocks:
      Head:
        params: {dropout: 0.1}
        inputs: [h]
        layers:
          - {op: Dropout, p: "${dropout}"}
          - {op: Linear, name: dense, out_features: 4}
    layers:
      - {op: Head, name: head, dropout: 0.3}
    """
    spec = compile_text(body)
    source = spec.source()
    assert "def __init__(self, *, in_features: int, dropout: float = 0.1)" in source
    assert "        self.dropout = nn.Dropout(p=dropout)" in source
    model = spec.build()
    assert model.head.dropout.p == 0.3


def test_extends_edits_nodes_by_their_names_as_written(tmp_path: Path) -> None:
    import nnspec

    (tmp_path / "base.yaml").write_text(
        "nnspec: 1\nname: Base\nparams: {dropout: 0.1}\ninputs: {x: [8]}\n"
        "layers:\n  - {op: Linear, name: dense, out_features: 8}\n"
        "  - {op: Dropout, p: '${dropout}'}\n"
        "  - {op: LayerNorm, name: LayerNorm}\n"
    )
    (tmp_path / "derived.yaml").write_text(
        "nnspec: 1\nextends: base.yaml\nname: Derived\n"
        "replace:\n  LayerNorm: {op: Identity, name: LayerNorm}\n"
        "remove: [dropout]\n"
    )
    model = nnspec.load(tmp_path / "derived.yaml").build()
    assert [n for n, _ in model.named_children()] == ["dense", "LayerNorm"]
    assert isinstance(model.LayerNorm, nn.Identity)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("train", "would hide nn.Module.train"),
        ("parameters", "would hide nn.Module.parameters"),
        ("to", "would hide nn.Module.to"),
        ("__dict__", "double underscore"),
        ("class", "keyword"),
        ("1x", "not starting with a digit"),
        ("a-b", "not an identifier"),
    ],
)
def test_names_still_refused(name: str, problem: str) -> None:
    found = node_name_problem(name)
    assert found is not None and problem in found


@pytest.mark.parametrize("name", ["LayerNorm", "self", "output", "dense", "torch", "F"])
def test_names_that_are_fine_attributes(name: str) -> None:
    assert node_name_problem(name) is None


def test_local_names() -> None:
    assert [local_name(n) for n in ["LayerNorm", "self", "nn", "len", "dense"]] == [
        "layer_norm", "self_", "nn_", "len_", "dense",
    ]  # fmt: skip
    assert local_name("h", {"h"}) == "h_"


def test_a_name_hiding_a_module_method_is_refused_where_written() -> None:
    expect_error(
        """\
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: eval, out_features: 4}
        """,
        5,
        24,
        "node name 'eval'",
        "would hide nn.Module.eval",
    )


def test_a_capitalised_name_with_a_hyphen_is_refused_by_the_schema() -> None:
    expect_error(
        """\
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: Layer-Norm, out_features: 4}
        """,
        5,
        24,
        "an identifier",
        "received 'Layer-Norm'",
    )
