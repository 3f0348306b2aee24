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
