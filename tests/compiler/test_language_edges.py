"""Rough edges of the language met while writing real models: each compiles as the
language says, or fails with a located message that says how to write it."""

from __future__ import annotations

import torch

import nnspec
from tests.helpers import compile_text, expect_error, spec_text


def test_allow_imports_none_means_no_packages() -> None:
    text = spec_text("inputs: {x: [8]}\nlayers: [{op: Linear, out_features: 2}]\n")
    spec = nnspec.loads(text, allow_imports=None)
    assert spec.build()(torch.zeros(1, 8)).shape == (1, 2)
    expect_error(
        "inputs: {x: [8]}\nlayers: ['tests.compiler.fixtures.custom_layers:Scale']\n",
        4,
        10,
        "not allowed",
        allow_imports=None,
    )


def test_allow_imports_as_one_string_is_one_package() -> None:
    # A single name is one package, not a set of letters.
    err = expect_error(
        "inputs: {x: [8]}\nlayers: ['tests.compiler.fixtures.custom_layers:Nothing']\n",
        4,
        10,
        "has no 'Nothing'",
        allow_imports="tests",
    )
    assert "not allowed" not in err.message


def test_function_node_may_take_a_module_attribute_name() -> None:
    # A function node's name is a local variable of forward, not an attribute.
    spec = compile_text(
        """
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: fc, out_features: 4}
          - {op: mul, name: half, in: fc, other: 0.5}
          - {op: add, name: train, in: [half, fc]}
        """
    )
    assert "torch.mul(fc, other=0.5)" in spec.source()
    model = spec.build()
    x = torch.randn(2, 8)
    assert torch.allclose(model(x), 1.5 * model.fc(x))
    assert callable(model.half) and callable(model.train)  # nn.Module's, untouched


def test_module_node_may_not_take_a_module_attribute_name() -> None:
    expect_error(
        """
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: half, out_features: 4}
        """,
        5,
        24,
        "node name 'half' would hide nn.Module.half",
        "attribute of the generated module",
    )


def test_init_expressions_are_evaluated_in_the_params() -> None:
    body = """
        params: {scale: 0.5}
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: fc, out_features: 3}
        init:
          - {match: Linear, weight: {constant: "${scale}"}, bias: {constant: ["${scale * 2}"]}}
          - {match: fc, weight: {normal: {mean: "${scale}", std: "${scale / 10}"}}}
        """
    spec = compile_text(body)
    source = spec.source()
    assert "nn.init.constant_(self.fc.bias, 1.0)" in source
    assert "nn.init.normal_(self.fc.weight, mean=0.5, std=0.05)" in source
    assert "${" not in source
    model = spec.build()
    assert torch.all(model.fc.bias == 1.0)
    overridden = compile_text(body, params={"scale": 2.0}).build()
    assert torch.all(overridden.fc.bias == 4.0)


def test_init_expression_mistake_is_located() -> None:
    expect_error(
        """
        params: {scale: 0.5}
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: fc, out_features: 3}
        init:
          - {match: Linear, weight: {normal: {std: "${scael}"}}}
        """,
        8,
        44,
        "normal, std",
        "unknown name 'scael'",
        "did you mean 'scale'?",
    )


def test_dtype_names_become_torch_dtypes() -> None:
    spec = compile_text(
        """
        inputs: {x: [8]}
        blocks:
          Cast:
            params: {kind: float64}
            inputs: [y]
            layers:
              - {op: Linear, name: fc, out_features: 4, dtype: "${kind}"}
        layers:
          - {op: ones_like, name: ids, dtype: int64}
          - {op: Embedding, name: emb, num_embeddings: 2, embedding_dim: 3, dtype: float64}
          - {op: Cast, name: wide, in: x}
          - {op: Cast, name: narrow, in: x, kind: float32}
        outputs: [emb, wide, narrow]
        """
    )
    source = spec.source()
    assert "torch.ones_like(x, dtype=torch.int64)" in source
    assert "nn.Embedding(2, 3, dtype=torch.float64)" in source
    assert "dtype=getattr(torch, kind)" in source  # the block's param, per instance
    model = spec.build()
    assert model.emb(torch.ones(2, 8, dtype=torch.int64)).dtype == torch.float64
    assert model.wide.fc.weight.dtype == torch.float64
    assert model.narrow.fc.weight.dtype == torch.float32


def test_attention_inputs_given_by_name_compile() -> None:
    # What the reference-as-argument errors suggest, written out.
    spec = compile_text(
        """
        inputs: {q: [10, 16], mask: [10, 10], pad: {shape: [10], dtype: bool}}
        layers:
          - op: scaled_dot_product_attention
            name: att
            in: {query: q, key: q, value: q, attn_mask: mask}
          - op: MultiheadAttention
            name: mha
            embed_dim: 16
            num_heads: 2
            batch_first: true
            in: {query: att, key: att, value: att, key_padding_mask: pad}
        outputs: mha.0
        """
    )
    model = spec.build()
    q = torch.randn(3, 10, 16)
    out = model(q, torch.zeros(3, 10, 10), torch.zeros(3, 10, dtype=torch.bool))
    assert out.shape == (3, 10, 16)


def test_shared_embedding_on_floats_does_not_say_declare_an_input() -> None:
    err = expect_error(
        """
        inputs: {tokens: {shape: [6], dtype: int64}}
        layers:
          - {op: Embedding, name: emb, num_embeddings: 10, embedding_dim: 4}
          - {op: Linear, name: fc, out_features: 4}
          - {use: emb, in: fc}
        """,
        7,
        5,
        "a shared Embedding looks up integer indices",
    )
    assert "declare the input" not in err.message


def test_embedding_on_a_float_input_still_says_declare_it() -> None:
    expect_error(
        """
        inputs: {tokens: [6]}
        layers:
          - {op: Embedding, name: emb, num_embeddings: 10, embedding_dim: 4}
        """,
        5,
        5,
        "(declare the input with dtype: int64)",
    )


def test_custom_op_dtype_argument_keeps_its_own_words() -> None:
    spec = compile_text(
        """
        inputs: {x: [4]}
        layers:
          - {op: "tests.compiler.fixtures.dtype_words:Quantise", dtype: floor}
          - {op: zeros_like, dtype: float64}
        """,
        allow_imports=["tests"],
    )
    assert 'Quantise(dtype="floor")' in spec.source()
    assert "dtype=torch.float64" in spec.source()
