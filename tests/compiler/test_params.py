"""Bare parameters and buffers (``param:``, ``buffer:``) and tied parameters (``tie:``):
compiled modules against hand-written ones, and the mistakes, each at its position."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nnspec
from tests.helpers import compile_text, expect_error


def flat(source: str) -> str:
    """The source with its line breaks inside brackets undone, as one line."""
    text = " ".join(source.split())
    return re.sub(r"\s*\)", ")", re.sub(r"\(\s*", "(", text)).replace(",)", ")")


VIT = """
params: {hidden: 16}
inputs: {x: [9, 16]}
layers:
  - {name: class_token, param: [1, 1, "${hidden}"], init: zeros}
  - {name: pos_embedding, param: [1, 9, "${hidden}"], init: {normal: {std: 0.02}}}
  - {op: add, in: [x, pos_embedding]}
  - {op: add, name: tokens, in: [class_token, add]}
  - {op: LayerNorm, name: ln}
  - {op: Linear, name: head, out_features: 4}
"""


class HandViT(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos_embedding = nn.Parameter(torch.empty(1, 9, hidden))
        self.ln = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 4)
        nn.init.normal_(self.pos_embedding, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.class_token + (x + self.pos_embedding)
        return self.head(self.ln(x))


def test_class_token_and_position_embedding_match_a_hand_written_module() -> None:
    spec = compile_text(VIT)
    source = spec.source()
    assert "self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))" in source
    assert "self.pos_embedding = nn.Parameter(torch.empty(1, 9, hidden))" in source
    assert "nn.init.normal_(self.pos_embedding, std=0.02)" in source
    assert "torch.add(x, self.pos_embedding)" in source
    model = spec.build()
    hand = HandViT()
    assert list(model.state_dict()) == list(hand.state_dict())
    assert isinstance(model.class_token, nn.Parameter)
    assert torch.all(model.class_token == 0)
    assert 0.005 < float(model.pos_embedding.detach().std()) < 0.05  # normal(std=0.02)
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.uniform_(p)  # a class token of zeros would hide a missing add
    hand.load_state_dict(model.state_dict())
    x = torch.randn(3, 9, 16)
    assert torch.equal(model(x), hand(x))
    # The value of a param has no batch dimension; the add broadcasts it.
    assert spec.compiled.result.calls[1].value.render() == "[B,9,16]"


def test_global_init_rule_and_freeze_reach_a_bare_parameter() -> None:
    spec = compile_text(
        VIT
        + """
init: [{match: class_token, value: {constant: 0.5}}]
freeze: [pos_embedding]
"""
    )
    source = spec.source()
    assert "nn.init.constant_(self.class_token, 0.5)" in source
    assert "self.pos_embedding.requires_grad_(False)" in source
    model = spec.build()
    assert torch.all(model.class_token == 0.5)
    assert not model.pos_embedding.requires_grad and model.class_token.requires_grad


LAYER_SCALE = """
inputs: {x: [8, 5, 5]}
blocks:
  ScaledConv:
    params: {dim: 8}
    layers:
      - {name: gamma, param: ["${dim}", 1, 1], init: {constant: 1.0e-6}}
      - {op: Conv2d, name: conv, out_channels: "${dim}", kernel_size: 3, padding: 1}
      - {op: mul, in: [gamma, conv]}
layers:
  - {op: ScaledConv, name: stage1}
  - {op: ScaledConv, name: stage2, dim: 4}
"""


class HandScaledConv(nn.Module):
    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), 1e-6))
        self.conv = nn.Conv2d(in_channels, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * self.conv(x)


def test_layer_scale_in_a_block_uses_the_constructor_sizes() -> None:
    spec = compile_text(LAYER_SCALE)
    source = spec.source()
    assert "self.gamma = nn.Parameter(torch.full((dim, 1, 1), 1e-06))" in source
    assert "class ScaledConv(nn.Module):" in source and source.count("class ") == 2
    model = spec.build()
    assert model.stage2.gamma.shape == (4, 1, 1)
    assert torch.all(model.stage1.gamma == 1e-6)
    hand = nn.Sequential(HandScaledConv(8, 8), HandScaledConv(8, 4))
    keys = [k.replace("stage1", "0").replace("stage2", "1") for k in model.state_dict()]
    assert keys == list(hand.state_dict())
    for p in model.parameters():
        nn.init.normal_(p)
    hand.load_state_dict(dict(zip(keys, model.state_dict().values())))
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(model(x), hand(x))
    assert spec.compiled.result.output_value.render() == "[B,4,5,5]"


def test_a_buffer_persistent_or_not() -> None:
    spec = compile_text(
        """
inputs: {x: [4, 4]}
layers:
  - {name: mask, buffer: [4, 4], init: ones, dtype: bool, persistent: false}
  - {name: offset, buffer: [4], init: {constant: 2.0}}
  - {op: masked_fill, in: [x, mask], value: 0.0}
  - {op: add, in: [masked_fill, offset]}
"""
    )
    source = flat(spec.source())
    assert (
        'self.register_buffer("mask", torch.ones(4, 4, dtype=torch.bool), '
        "persistent=False)" in source
    )
    assert 'self.register_buffer("offset", torch.full((4), 2.0))' in source
    model = spec.build()
    assert list(model.state_dict()) == ["offset"]  # the mask is not saved
    assert dict(model.named_buffers())["mask"].dtype == torch.bool
    assert list(model.parameters()) == []
    x = torch.randn(2, 4, 4)
    assert torch.equal(model(x), torch.zeros(2, 4, 4) + 2.0)


def test_a_parameter_that_does_not_train() -> None:
    spec = compile_text(
        """
inputs: {x: [3]}
layers:
  - {name: scale, param: [3], init: ones, requires_grad: false}
  - {op: mul, in: [x, scale]}
"""
    )
    assert "nn.Parameter(torch.ones(3), requires_grad=False)" in spec.source()
    model = spec.build()
    assert not model.scale.requires_grad and "scale" in model.state_dict()


TIED = """
inputs: {ids: {shape: [6], dtype: int64}}
layers:
  - {op: Embedding, name: wte, num_embeddings: 50, embedding_dim: 8}
  - {op: LayerNorm, name: ln_f}
  - {op: Linear, name: lm_head, out_features: 50, bias: false, tie: {weight: wte.weight}}
"""


def test_a_tied_head_shares_the_embedding_parameter() -> None:
    spec = compile_text(TIED)
    source = spec.source()
    assert "self.lm_head.weight = self.wte.weight" in source
    assert source.index("self.lm_head.weight =") > source.index("self.lm_head =")
    model = spec.build()
    assert model.lm_head.weight is model.wte.weight
    assert list(model.state_dict()) == [
        "wte.weight",
        "ln_f.weight",
        "ln_f.bias",
        "lm_head.weight",
    ]
    assert sum(p.numel() for p in model.parameters()) == 50 * 8 + 16
    summary = spec.summary()
    assert summary.totals.params == 50 * 8 + 16  # counted once
    assert summary.ties == [("lm_head.weight", "wte.weight")]
    assert "tied               lm_head.weight = wte.weight" in summary.render()
    assert summary["lm_head"].params == 50 * 8  # the row shows the module's own
    ids = torch.randint(0, 50, (2, 6))
    expected = model.ln_f(model.wte(ids)) @ model.wte.weight.t()
    assert torch.allclose(model(ids), expected)


def test_a_tie_after_init_rules_wins() -> None:
    spec = compile_text(TIED + "init: [{match: Linear, weight: zeros}]\n")
    source = spec.source()
    assert source.index("self.reset_parameters()") < source.index(
        "self.lm_head.weight = self.wte.weight"
    )
    model = spec.build()
    assert model.lm_head.weight is model.wte.weight
    assert not torch.all(model.wte.weight == 0)


def test_tie_like_gpt2_lm_head_model() -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=16
        )
    )
    assert reference.lm_head.weight is reference.transformer.wte.weight
    spec = compile_text(
        """
inputs: {ids: {shape: [16], dtype: int64}}
layers:
  - {op: Embedding, name: wte, num_embeddings: 100, embedding_dim: 32}
  - {op: Linear, name: lm_head, out_features: 100, bias: false, tie: {weight: wte.weight}}
"""
    )
    model = spec.build()
    ref_keys = {
        k
        for k in reference.state_dict()
        if k.endswith(("wte.weight", "lm_head.weight"))
    }
    assert ref_keys == {"transformer.wte.weight", "lm_head.weight"}
    assert set(model.state_dict()) == {"wte.weight", "lm_head.weight"}
    # Both keep both keys and count the shared tensor once.
    assert sum(p.numel() for p in model.parameters()) == 100 * 32
    assert reference.transformer.wte.weight.shape == model.wte.weight.shape


# -- mistakes ------------------------------------------------------------------------


def test_param_with_op_is_an_error() -> None:
    expect_error(
        """
inputs: {x: [4]}
layers:
  - {name: p, param: [4], op: Linear}
  - {op: mul, in: [x, p]}
""",
        5,
        27,
        "param node 'p'",
        "takes no 'op'",
    )


def test_param_size_below_one_is_an_error() -> None:
    expect_error(
        """
params: {n: 0}
inputs: {x: [4]}
layers:
  - {name: p, param: [4, 0]}
  - {name: q, param: ["${n}"]}
  - {op: mul, in: [x, p]}
""",
        6,
        26,
        "size 1 is 0",
        "positive integer",
    )


def test_param_size_expression_below_one_is_an_error() -> None:
    expect_error(
        """
params: {n: 0}
inputs: {x: [4]}
layers:
  - {name: q, param: ["${n}"]}
  - {op: mul, in: [x, q]}
""",
        6,
        23,
        "node 'q' (param)",
        "size 0 must be a positive integer",
        "received number 0",
    )


def test_unknown_init_of_a_param_is_an_error() -> None:
    expect_error(
        """
inputs: {x: [4]}
layers:
  - {name: p, param: [4], init: {normall: {std: 0.1}}}
  - {op: mul, in: [x, p]}
""",
        5,
        33,
        "unknown initialiser 'normall'",
        "did you mean 'normal'",
    )


def test_tie_to_a_missing_path_is_an_error() -> None:
    expect_error(
        TIED.replace("wte.weight}", "wtee.weight}"),
        7,
        78,
        "no parameter 'wtee.weight' in the model",
        "did you mean 'wte.weight'",
    )


def test_tie_to_a_parameter_the_module_lacks_is_an_error() -> None:
    expect_error(
        TIED.replace("wte.weight}", "wte.bias}"),
        7,
        78,
        "module 'wte' has no parameter 'bias'",
        "its parameters: weight",
    )


def test_tie_of_a_parameter_the_node_lacks_is_an_error() -> None:
    expect_error(
        TIED.replace("tie: {weight:", "tie: {bias:"),
        7,
        70,
        "node 'lm_head' (Linear) has no parameter 'bias' to tie",
        "its parameters: weight",
    )


def test_tie_of_another_shape_is_an_error() -> None:
    expect_error(
        TIED.replace("out_features: 50", "out_features: 49"),
        7,
        78,
        "its shape [49, 8] is not wte.weight's [50, 8]",
    )


def test_tie_on_a_function_node_is_an_error() -> None:
    expect_error(
        """
inputs: {x: [4]}
layers:
  - {op: Linear, name: fc, out_features: 4}
  - {op: relu, tie: {weight: fc.weight}}
""",
        6,
        16,
        "tie shares a parameter of the node's module",
        "a function node builds none",
    )


def test_generated_sources_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    sources = {
        "vit": VIT,
        "layer_scale": LAYER_SCALE,
        "tied": TIED,
        "buffer": """
inputs: {x: [4, 4]}
layers:
  - {name: mask, buffer: [4, 4], init: ones, dtype: bool, persistent: false}
  - {op: masked_fill, in: [x, mask], value: 0.0}
""",
    }
    files = []
    for name, body in sources.items():
        path = tmp_path / f"gen_{name}.py"
        path.write_text(compile_text(body).source(), encoding="utf-8")
        files.append(str(path))
    cache = str(tmp_path / ".mypy_cache")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache, *files],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_replace_a_param_in_a_derived_spec_and_tie_into_a_repeat(
    tmp_path: Path,
) -> None:
    (tmp_path / "base.yaml").write_text(
        """nnspec: 1
name: Base
inputs: {x: [4, 8]}
layers:
  - {name: pos, param: [4, 8], init: zeros}
  - {op: add, in: [x, pos]}
  - {op: Linear, name: fc, out_features: 8, repeat: 2}
  - {op: Linear, name: head, out_features: 8, bias: false, tie: {weight: fc.1.weight}}
""",
        encoding="utf-8",
    )
    (tmp_path / "derived.yaml").write_text(
        """nnspec: 1
extends: base.yaml
name: Derived
replace:
  pos: {name: pos, param: [1, 8], init: ones}
""",
        encoding="utf-8",
    )
    spec = nnspec.load(tmp_path / "derived.yaml")
    assert "self.head.weight = self.fc[1].weight" in spec.source()
    model = spec.build()
    assert model.pos.shape == (1, 8) and torch.all(model.pos == 1)
    assert model.head.weight is model.fc[1].weight
    x = torch.randn(2, 4, 8)
    assert torch.equal(model(x), model.head(model.fc(x + 1)))


def test_the_graph_draws_a_param_where_nodes_read_it() -> None:
    from nnspec.inspection.graph_build import build_diagram
    from nnspec.inspection.kinds import NodeKind

    diagram = build_diagram(compile_text(LAYER_SCALE).summary(), depth=1)
    tensors = [n for n in diagram.nodes.values() if n.kind is NodeKind.TENSOR]
    assert sorted(n.id for n in tensors) == [
        "tensor:stage1.gamma",
        "tensor:stage2.gamma",
    ]
    assert ("tensor:stage1.gamma", "stage1.mul") in {
        (e.src, e.dst) for e in diagram.edges
    }
