"""Default node names and the rules for names in generated code."""

from __future__ import annotations

import pytest

from nnspec.compiler.names import Namespace, name_problem, snake_case


@pytest.mark.parametrize(
    ("op", "name"),
    [
        ("BatchNorm2d", "batch_norm2d"),
        ("ReLU", "relu"),
        ("MaxPool2d", "max_pool2d"),
        ("DoubleConv", "double_conv"),
        ("cat", "cat"),
        ("LeakyReLU", "leaky_relu"),
        ("PReLU", "prelu"),
        ("GELU", "gelu"),
        ("SiLU", "silu"),
        ("LSTMCell", "lstm_cell"),
        ("ConvTranspose2d", "conv_transpose2d"),
        ("AdaptiveAvgPool2d", "adaptive_avg_pool2d"),
        ("MultiheadAttention", "multihead_attention"),
        ("pkg.layers:SpecialConv", "special_conv"),
    ],
)
def test_snake_case_follows_torch_functional_spelling(op: str, name: str) -> None:
    assert snake_case(op) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("class", "keyword"),
        ("__init__", "double underscore"),
        ("train", "nn.Module.train"),
        ("forward", "nn.Module.forward"),
        ("len", "builtin"),
        ("self", "generated code"),
        ("Conv", "lowercase identifier"),
        ("1x", "lowercase identifier"),
    ],
)
def test_names_that_cannot_reach_generated_code(name: str, problem: str) -> None:
    found = name_problem(name)
    assert found is not None and problem in found


def test_namespace_skips_taken_names() -> None:
    ns = Namespace({"relu_1"})
    assert [ns.fresh("relu") for _ in range(3)] == ["relu", "relu_2", "relu_3"]
    assert ns.fresh("sum") == "sum_"
