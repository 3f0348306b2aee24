"""Generated source: block classes, symbolic sizes, determinism, tracebacks, meta builds."""

from __future__ import annotations

import time
import traceback

import torch

import nnspec
from tests.helpers import compile_text

BLOCKS = """
inputs: {x: [3, 16, 16]}
blocks:
  ConvBn:
    params: {out: {type: int}, k: 3}
    layers:
      - {op: Conv2d, out_channels: "${out}", kernel_size: "${k}", padding: "${k // 2}"}
      - BatchNorm2d
      - ReLU
  Pair:
    params: {out: {type: int}}
    layers:
      - {op: ConvBn, name: a, out: "${out}"}
      - {op: ConvBn, name: b, out: "${out * 2}", k: 1}
layers:
  - {op: Pair, name: p1, out: 8}
  - {op: Pair, name: p2, out: 4}
  - {op: AdaptiveAvgPool2d, output_size: 1}
  - Flatten
  - {op: Linear, out_features: "${p2.shape[1] + 1}"}
"""


def test_one_class_per_block_with_sizes_from_its_params() -> None:
    source = compile_text(BLOCKS).source()
    assert source.count("class ConvBn(nn.Module):") == 1
    assert source.count("class Pair(nn.Module):") == 1
    assert (
        "def __init__(self, *, in_channels: int, out: int, k: int = 3) -> None:"
        in source
    )
    assert "nn.Conv2d(in_channels, out, kernel_size=k, padding=k // 2)" in source
    assert "self.b = ConvBn(in_channels=out, out=out * 2, k=1)" in source
    assert "self.p2 = Pair(in_channels=16, out=4)" in source
    assert "self.linear = nn.Linear(8, 9)" in source


def test_block_class_matches_its_uses() -> None:
    spec = compile_text(BLOCKS)
    model = spec.build().eval()
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 9)
    # The block classes work on their own, for other sizes than the spec used.
    module = spec.module_class().__module__
    import sys

    pair = sys.modules[module].Pair(in_channels=5, out=2)
    assert pair(torch.randn(1, 5, 4, 4)).shape == (1, 4, 4, 4)


def test_value_not_expressible_in_block_params_is_passed_by_the_parent() -> None:
    source = compile_text(
        """
        inputs: {x: [6, 10]}
        blocks:
          Norm:
            layers:
              - {op: LayerNorm, normalized_shape: "${[x.shape[1], x.shape[2]]}"}
              - {op: Linear, out_features: "${x.shape[1] * 3 + 1}"}
              - {op: mean, dim: 1}
              - {op: Linear, out_features: 2}
        layers:
          - Norm
        """
    ).source()
    assert (
        "self, *, in_dim1: int, in_features: int, linear_1_in_features: int" in source
    )
    assert "nn.LayerNorm((in_dim1, in_features))" in source
    assert "nn.Linear(in_features, in_dim1 * 3 + 1)" in source
    # The mean's output size has no closed form here: the parent passes it.
    assert "nn.Linear(linear_1_in_features, 2)" in source
    assert (
        "self.norm = Norm(in_dim1=6, in_features=10, linear_1_in_features=19)" in source
    )


def test_same_spec_same_bytes() -> None:
    assert compile_text(BLOCKS).source() == compile_text(BLOCKS).source()


def test_tracebacks_show_generated_lines() -> None:
    spec = compile_text(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: fc, out_features: 3}
        """
    )
    model = spec.build()
    try:
        model(torch.randn(2, 5))
    except RuntimeError:
        text = traceback.format_exc()
    else:  # pragma: no cover
        raise AssertionError("a wrong input size must fail")
    assert "<nnspec:net.yaml:" in text
    assert "return self.fc(x)" in text


def test_meta_build_allocates_nothing_for_ten_billion_parameters() -> None:
    spec = compile_text(
        """
        inputs: {x: [16384]}
        layers:
          - {op: Linear, out_features: 16384, bias: false, repeat: 38}
        """
    )
    model = spec.build(device="meta")
    total = sum(p.numel() for p in model.parameters())
    assert total == 38 * 16384 * 16384 > 10_000_000_000
    assert all(p.is_meta for p in model.parameters())


def test_allowed_custom_module() -> None:
    spec = compile_text(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, out_features: 6}
          - {op: "tests.compiler.fixtures.custom_layers:Scale", features: 6, init: 2.0}
        """,
        allow_imports=["tests"],
    )
    source = spec.source()
    assert "import tests.compiler.fixtures.custom_layers" in source
    assert "tests.compiler.fixtures.custom_layers.Scale(features=6, init=2.0)" in source
    model = spec.build()
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), model.linear(x) * 2.0)


def test_function_args_and_repeats() -> None:
    spec = compile_text(
        """
        inputs: {x: [2, 3]}
        layers:
          - {op: Linear, name: stack, out_features: 3, repeat: 2}
          - {op: flatten, args: [1]}
          - {op: softmax, dim: -1}
        """
    )
    source = spec.source()
    assert "nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))" in source
    assert "torch.flatten(x, 1)" in source
    assert "F.softmax(x, dim=-1)" in source
    model = spec.build()
    x = torch.randn(4, 2, 3)
    expected = torch.softmax(
        torch.flatten(model.stack[1](model.stack[0](x)), 1), dim=-1
    )
    torch.testing.assert_close(model(x), expected)
    assert list(dict(model.named_parameters())) == [
        "stack.0.weight",
        "stack.0.bias",
        "stack.1.weight",
        "stack.1.bias",
    ]


def test_loads_and_load_agree(tmp_path) -> None:
    text = "nnspec: 1\nname: Tiny\ninputs: {x: [2]}\nlayers: [{op: Linear, out_features: 1}]\n"
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    assert nnspec.load(path).source() == nnspec.loads(text, path="tiny.yaml").source()


def test_compile_reports_the_seconds_of_each_stage() -> None:
    start = time.perf_counter()
    spec = compile_text(BLOCKS)
    elapsed = time.perf_counter() - start
    seconds = spec.compiled.stage_seconds
    assert list(seconds) == ["validate", "resolve", "shapes", "codegen"]
    assert all(s >= 0 for s in seconds.values())
    # The stages are laps of one clock inside the compile: they cannot add up to more.
    assert sum(seconds.values()) <= elapsed
