"""Sums of symbolic sizes: like terms collected, exactly, in a readable order."""

from __future__ import annotations

import ast
import random
import sys

import pytest
import torch
from torch import nn

from nnspec.compiler.expressions import Scope, Val, evaluate, parse_expression
from nnspec.compiler.sums import simplify
from tests.helpers import compile_text


def _simplified(text: str) -> str:
    return ast.unparse(simplify(ast.parse(text, mode="eval").body))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # like terms, the symbols in the order they first appear
        ("in_channels + g + g + g + g + g", "in_channels + 5 * g"),
        ("g + c + g + 2 * c", "2 * g + 3 * c"),
        ("b - a - a - a", "b - 3 * a"),
        ("-a - a", "-2 * a"),
        ("c + (g + g) * 2", "c + 4 * g"),
        ("(a + a) * 3", "6 * a"),
        # a literal times a sum: the sum is one term, never multiplied out
        ("2 * (a + b) + 3 * (a + b)", "5 * (a + b)"),
        ("(a + b) * 2 - 2 * (a + b)", "0"),
        ("c - (a + 1) * 3 + (a + 1) * 2", "c - (a + 1)"),
        ("0 * (a + b) + c", "c"),
        # cancelling to a constant, or to nothing
        ("a - a", "0"),
        ("a + 4 - a", "4"),
        ("a + b - a - b - 3", "-3"),
        # zero coefficients dropped, the constant last
        ("a + b - a + 3 - 3", "b"),
        ("a - 2 * a + a + c", "c"),
        ("1 + a + 2", "a + 3"),
        ("2 + a - 5", "a - 3"),
        ("a * 0 + b", "b"),
        # a floor division is a term: kept as written, its insides simplified
        ("a // 2 + a // 2", "2 * (a // 2)"),
        ("(g + g) // 2 + g", "2 * g // 2 + g"),
        ("(a + 1) // 2 - 1", "(a + 1) // 2 - 1"),
        ("(x - x + y) // 4", "y // 4"),
        # a product of symbols is a term, its factors simplified
        ("(a + a) * b + a * b", "2 * a * b + a * b"),
        ("a * b - a * b", "0"),
        # nothing combines: as written
        ("skip_channels + x_channels", "skip_channels + x_channels"),
        ("x_height * 2", "x_height * 2"),
        ("2 * (a + b)", "2 * (a + b)"),
        ("2 * (a + b) + a", "2 * (a + b) + a"),
        ("(out + k) * 2 + (out + k)", "(out + k) * 2 + (out + k)"),
        ("(a + 1) * (a - 1)", "(a + 1) * (a - 1)"),
        ("-a + b", "-a + b"),
        # a call or a conditional is kept whole
        ("max(a + a, b) + 1", "max(a + a, b) + 1"),
        ("(a if a else b + b) + a", "(a if a else b + b) + a"),
    ],
)
def test_simplify(text: str, expected: str) -> None:
    assert _simplified(text) == expected


def test_simplify_does_not_change_its_argument() -> None:
    tree = ast.parse("g + g + g", mode="eval").body
    before = ast.dump(tree)
    simplify(tree)
    assert ast.dump(tree) == before


@pytest.mark.parametrize(
    "text",
    [
        "a + b - a + 3 * (b - 2) - c // 3 + c // 3 + a",
        "(a - b + b) // 3 - (a + a) % 5 + 2 * (c - 1) * (b + b)",
        "-(a - c) + -(-b) - 4 * (a + c + 1) + (a + 7) // (c * c + 1)",
        "(a + b + a) ** 2 - a * (b - b + c) + 11",
    ],
)
def test_simplified_sums_have_the_same_value(text: str) -> None:
    tree = ast.parse(text, mode="eval")
    simple = ast.Expression(simplify(tree.body))
    original, simplified = (
        compile(t, "<test>", "eval") for t in (tree, ast.fix_missing_locations(simple))
    )
    rng = random.Random(0)
    for _ in range(200):
        names = {k: rng.randint(-50, 50) for k in "abc"}
        assert eval(simplified, {}, names) == eval(original, {}, names), names


DENSE = """
params: {growth: 4}
inputs: {x: [8, 6, 6]}
blocks:
  DenseLayer:
    params: {g: {type: int}}
    layers:
      - BatchNorm2d
      - ReLU
      - {op: Conv2d, out_channels: "${g}", kernel_size: 3, padding: 1}
  DenseBlock:
    params: {g: {type: int}}
    layers:
      - {op: DenseLayer, name: l1, in: x, g: "${g}"}
      - {op: cat, name: c1, in: [x, l1], dim: 1}
      - {op: DenseLayer, name: l2, g: "${g}"}
      - {op: cat, name: c2, in: [x, l1, l2], dim: 1}
      - {op: DenseLayer, name: l3, g: "${g}"}
      - {op: cat, name: c3, in: [x, l1, l2, l3], dim: 1}
      - {op: DenseLayer, name: l4, g: "${g}"}
      - {op: cat, name: c4, in: [x, l1, l2, l3, l4], dim: 1}
      - {op: DenseLayer, name: l5, g: "${g}"}
      - {op: cat, name: c5, in: [x, l1, l2, l3, l4, l5], dim: 1}
      - {op: Conv2d, name: out, out_channels: "${c5.shape[1] - 3 * g}", kernel_size: 1}
layers:
  - {op: DenseBlock, name: b1, g: "${growth}"}
  - {op: DenseBlock, name: b2, g: "${growth}"}
"""


class _Layer(nn.Module):
    def __init__(self, in_channels: int, g: int) -> None:
        super().__init__()
        self.batch_norm2d = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv2d = nn.Conv2d(in_channels, g, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.relu(self.batch_norm2d(x)))


class _Block(nn.Module):
    def __init__(self, in_channels: int, g: int) -> None:
        super().__init__()
        self.layers = [f"l{i}" for i in range(1, 6)]
        for i, name in enumerate(self.layers):
            self.add_module(name, _Layer(in_channels + i * g, g))
        self.out = nn.Conv2d(in_channels + 5 * g, in_channels + 2 * g, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for name in self.layers:
            features.append(getattr(self, name)(torch.cat(features, dim=1)))
        return self.out(torch.cat(features, dim=1))


def test_growth_outputs_joined_make_a_multiple_of_the_growth() -> None:
    source = compile_text(DENSE).source()
    assert "in_channels + 5 * g" in source
    # c5.shape[1] - 3 * g, used twice: computed once
    assert "out_channels = in_channels + 2 * g" in source
    assert "nn.Conv2d(in_channels + 5 * g, out_channels, kernel_size=1)" in source
    assert "(B, in_channels + 5 * g, in_height, in_width)" in source
    assert "self.l2 = DenseLayer(in_channels=in_channels + g, g=g)" in source
    assert "self.l4 = DenseLayer(in_channels=in_channels + 3 * g, g=g)" in source
    assert "self.l5 = DenseLayer(in_channels=in_channels + 4 * g, g=g)" in source
    assert "g + g" not in source


def test_growth_block_builds_the_same_module() -> None:
    spec = compile_text(DENSE)
    model = spec.build().eval()
    reference = nn.Sequential()
    reference.add_module("b1", _Block(8, 4))
    reference.add_module("b2", _Block(16, 4))
    reference.eval()
    state = model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    reference.load_state_dict(state)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    # The block's class computes its sizes for other sizes than the spec's.
    block = sys.modules[spec.module_class().__module__].DenseBlock(in_channels=3, g=2)
    other = _Block(3, 2).eval()
    other.load_state_dict(block.state_dict())
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block.eval()(x), other(x))


def test_a_block_output_in_its_parents_terms_is_simplified() -> None:
    nested = DENSE.replace(
        "layers:\n  - {op: DenseBlock, name: b1",
        """  Stage:
    params: {g: {type: int}}
    layers:
      - {op: DenseBlock, name: b1, g: "${g}"}
      - {op: DenseBlock, name: b2, g: "${g}"}
      - {op: Conv2d, name: head, out_channels: "${b2.shape[1]}", kernel_size: 1}
layers:
  - {op: Stage, name: stage, g: "${growth}"}
  - {op: DenseBlock, name: b1""",
    )
    spec = compile_text(nested)
    source = spec.source()
    # b2 gives in_channels + 2 * g of its input, itself in_channels + 2 * g
    assert "out_channels = in_channels + 4 * g" in source
    assert "self.head = nn.Conv2d(out_channels, out_channels, kernel_size=1)" in source
    assert "self.b2 = DenseBlock(in_channels=in_channels + 2 * g, g=g)" in source
    assert spec.build()(torch.randn(1, 8, 6, 6)).shape == (1, 40, 6, 6)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, "2 * g - 1"), (0.1, "g + g - 1"), ("ab", "g + g")],
)
def test_only_integer_sums_are_simplified(value: object, expected: str) -> None:
    scope = Scope({"g": Val(value, ast.Name("g", ast.Load()))})
    text = "g + g" if isinstance(value, str) else "g + g - 1"
    result = evaluate(parse_expression(text), scope)
    assert result.sym is not None
    assert ast.unparse(result.sym) == expected
