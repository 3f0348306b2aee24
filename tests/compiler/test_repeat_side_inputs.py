"""Repeats with side inputs: the first input is chained, the others go to every copy
(an attention mask to every layer), as ``for layer in self.layer: x = layer(x, mask)``."""

from __future__ import annotations

import torch
from torch import nn
from torch.testing import assert_close

from tests.helpers import compile_text, expect_error

LAYER = """\
  Layer:
    inputs: [h, mask]
    layers:
      - {op: Linear, name: dense, in: h, out_features: 16}
      - {op: mul, in: [dense, mask]}
      - {op: LayerNorm, name: LayerNorm}
"""

STACK = (
    """\
inputs: {x: [5, 16], mask: [5, 16]}
blocks:
"""
    + LAYER
    + """\
layers:
  - {op: Linear, name: embed, out_features: 16}
  - {op: Layer, name: layer, in: [embed, mask], repeat: 2}
"""
)


class _Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(16, 16)
        self.LayerNorm = nn.LayerNorm(16)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) * mask)


class _Stack(nn.Module):
    def __init__(self, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 16)
        self.layer = nn.ModuleList([_Layer() for _ in range(depth)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for layer in self.layer:
            x = layer(x, mask)
        return x


def _randomise(module: nn.Module) -> None:
    with torch.no_grad():
        for value in module.state_dict().values():
            value.normal_()


def test_a_stack_with_a_mask_to_every_layer_matches_a_module_list_loop() -> None:
    spec = compile_text(STACK)
    model = spec.build().eval()
    reference = _Stack().eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    assert "layer.1.LayerNorm.weight" in model.state_dict()
    assert isinstance(model.layer, nn.ModuleList)
    _randomise(reference)
    model.load_state_dict(reference.state_dict())
    x, mask = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    assert_close(model(x, mask), reference(x, mask))


def test_the_generated_code_loops_over_a_module_list() -> None:
    source = compile_text(STACK).source()
    assert (
        "        self.layer = nn.ModuleList([Layer(h_features=16), Layer(h_features=16)])"
    ) in source
    assert (
        "        for layer in self.layer:  # net.yaml:13  (B, 5, 16)\n"
        "            x = layer(x, mask)\n"
        "        return x\n"
    ) in source


def test_a_block_builds_as_many_layers_as_its_depth() -> None:
    body = (
        "inputs: {x: [5, 16], mask: [5, 16]}\nblocks:\n"
        + LAYER
        + """\
  Encoder:
    params: {depth: 2}
    inputs: [h, mask]
    layers:
      - {op: Layer, name: layer, in: [h, mask], repeat: "${depth}"}
layers:
  - {op: Encoder, name: encoder, in: [x, mask], depth: 3}
"""
    )
    spec = compile_text(body)
    source = spec.source()
    assert "*(Layer(h_features=16) for _ in range(depth - 1))" in source
    assert "        for layer in self.layer:  # net.yaml:15" in source
    assert "            h = layer(h, mask)\n        return h\n" in source
    model = spec.build().eval()
    assert len(model.encoder.layer) == 3
    # The class honours its depth: built with another, it has as many layers.
    namespace: dict[str, object] = {}
    exec(compile(source, "generated.py", "exec"), namespace)  # the compiler's output
    encoder = namespace["Encoder"](h_features=16, depth=5)  # type: ignore[operator]
    assert len(encoder.layer) == 5
    reference = nn.Module()
    reference.layer = nn.ModuleList([_Layer() for _ in range(3)])
    _randomise(reference)
    model.encoder.load_state_dict(reference.state_dict())
    x, mask = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    expected = x
    for layer in reference.layer:
        expected = layer(expected, mask)
    assert_close(model(x, mask), expected)


def test_the_loop_value_is_kept_when_used_again() -> None:
    body = STACK + "  - {op: add, in: [layer, embed]}\n"
    spec = compile_text(body)
    source = spec.source()
    # The chain takes the loop; embed keeps a local of its own for the sum.
    assert "        embed = self.embed(x)" in source
    assert "        x = embed\n        for layer in self.layer:" in source
    assert (
        "            x = layer(x, mask)\n        return torch.add(x, embed)" in source
    )
    model = spec.build().eval()
    x, mask = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    embed = model.embed(x)
    out = embed
    for layer in model.layer:
        out = layer(out, mask)
    assert_close(model(x, mask), out + embed)


def test_a_repeated_function_takes_its_side_input_every_time() -> None:
    body = """\
    inputs: {x: [4], b: [4]}
    layers:
      - {op: add, in: [x, b], repeat: 3}
    """
    model = compile_text(body).build()
    x, b = torch.randn(2, 4), torch.randn(2, 4)
    assert_close(model(x, b), x + 3 * b)


def test_summary_shows_the_looped_copies() -> None:
    summary = compile_text(STACK).summary()
    assert summary["layer"].op == "Layer"
    assert [r.name for r in summary["layer"].children] == ["layer.0", "layer.1"]
    assert summary["layer"].params == 2 * (16 * 16 + 16 + 32)
    assert summary["layer.1.LayerNorm"].params == 32
    assert summary["layer.1.LayerNorm"].flops == 0 and summary["layer.0.dense"].flops


def test_a_copy_that_returns_two_values_cannot_repeat() -> None:
    expect_error(
        """\
        inputs: {x: [8], y: [8]}
        blocks:
          Pair:
            inputs: [a, b]
            layers: [{op: add, in: [a, b]}]
            outputs: [add, b]
        layers:
          - {op: Pair, name: p, in: [x, y], repeat: 2}
        """,
        10,
        5,
        "node 'p' (Pair)",
        "repeats, so it must return one tensor",
    )


def test_a_loop_whose_value_is_an_output_keeps_its_own_local() -> None:
    body = STACK + "outputs: {hidden: layer, embedded: embed}\n"
    spec = compile_text(body)
    source = spec.source()
    assert "        layer = embed\n        for layer_module in self.layer:" in source
    assert "            layer = layer_module(layer, mask)\n" in source
    model = spec.build().eval()
    x, mask = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    out = model(x, mask)
    expected = model.embed(x)
    assert_close(out["embedded"], expected)
    for layer in model.layer:
        expected = layer(expected, mask)
    assert_close(out["hidden"], expected)
