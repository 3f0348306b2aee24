"""Shape rules of the ops that move, split and drop dimensions (compiler/layout_rules.py).

Each case runs the op inside a block, so its input sizes are the block's constructor
parameters: the rule's output must equal torch's on the meta device, dimension by
dimension and batch included, and every size must still be written in the block's
terms (the meta device alone would leave them unknown). Wrong inputs give an error at
the node's line and column.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import pytest
import torch
from torch import nn

from nnspec.compiler.values import BATCH, TensorValue

from ..helpers import compile_text, expect_error

T = torch.Tensor
CASES: list[tuple[str, list[int], str, Callable[[T], T | tuple[T, ...]]]] = [
    ("permute", [3, 4, 5], "args: [[0, 2, 3, 1]]", lambda x: x.permute(0, 2, 3, 1)),
    ("permute", [3, 4, 5], "dims: [0, -1, -3, 2]", lambda x: x.permute(0, 3, 1, 2)),
    ("permute", [3, 4], "args: [[1, 0, 2]]", lambda x: x.permute(1, 0, 2)),
    ("transpose", [3, 4, 5], "args: [1, 2]", lambda x: x.transpose(1, 2)),
    ("transpose", [3, 4, 5], "dim0: -1, dim1: -3", lambda x: x.transpose(-1, -3)),
    ("transpose", [3, 4], "args: [-1], dim1: 0", lambda x: x.transpose(-1, 0)),
    ("swapaxes", [3, 4], "axis0: 1, axis1: 2", lambda x: x.swapaxes(1, 2)),
    ("swapdims", [3, 4], "args: [2, 1]", lambda x: x.swapdims(2, 1)),
    ("movedim", [3, 4, 5], "args: [1, -1]", lambda x: x.movedim(1, -1)),
    ("movedim", [3, 4, 5], "source: [1, 2], destination: [3, 1]",
     lambda x: x.movedim((1, 2), (3, 1))),
    ("moveaxis", [3, 4, 5], "args: [[-1], [1]]", lambda x: x.moveaxis(-1, 1)),
    ("unflatten", [12, 5], "args: [1, [3, 4]]", lambda x: x.unflatten(1, (3, 4))),
    ("unflatten", [12, 5], "dim: -2, sizes: [2, -1, 3]",
     lambda x: x.unflatten(-2, (2, -1, 3))),
    ("Unflatten", [5, 12], "dim: 2, unflattened_size: [-1, 4]",
     nn.Unflatten(2, (-1, 4))),
    ("select", [3, 4, 5], "args: [2, -1]", lambda x: x.select(2, -1)),
    ("select", [3, 4], "dim: -1, index: 0", lambda x: x.select(-1, 0)),
    ("split", [10, 4], "args: [4, 1]", lambda x: x.split(4, 1)),
    ("split", [10, 4], "split_size_or_sections: [3, 7], dim: -2",
     lambda x: x.split([3, 7], -2)),
    ("chunk", [3, 8], "args: [2, -1]", lambda x: x.chunk(2, -1)),
    ("chunk", [10, 4], "chunks: 3, dim: 1", lambda x: x.chunk(3, 1)),
    ("squeeze", [1, 4, 1], "{}", lambda x: x.squeeze()),
    ("squeeze", [1, 4, 1], "args: [-1]", lambda x: x.squeeze(-1)),
    ("squeeze", [1, 4, 1], "dim: [1, 2]", lambda x: x.squeeze((1, 2))),
    ("unsqueeze", [3, 4], "args: [-1]", lambda x: x.unsqueeze(-1)),
    ("unsqueeze", [3, 4], "dim: 1", lambda x: x.unsqueeze(1)),
    ("flatten", [3, 4, 5], "args: [2, -1]", lambda x: x.flatten(2, -1)),
    ("flatten", [3, 4, 5], "start_dim: -3, end_dim: 2", lambda x: x.flatten(-3, 2)),
    ("Flatten", [3, 4, 5], "start_dim: 2", nn.Flatten(2)),
    ("reshape", [3, 4], "args: [[-1, 12]]", lambda x: x.reshape(-1, 12)),
    ("reshape", [3, 4], "shape: [2, -1, 6]", lambda x: x.reshape(2, -1, 6)),
]  # fmt: skip
#: The names a block with one input gives its input sizes.
SIZES = {"in_features", "in_channels", "in_height", "in_width", "in_dim1", "in_dim2"}
#: Chunks of unequal size: the shapes are torch's, the sizes not all symbolic.
SHAPES_ONLY = {("chunk", "chunks: 3, dim: 1")}


def _block_spec(op: str, shape: list[int], written: str) -> str:
    args = written.strip("{}")
    node = "{op: " + op + ", name: n" + (", " + args if args else "") + "}"
    return f"""
        inputs: {{x: {shape}}}
        blocks:
          Rearrange:
            layers:
              - {node}
        layers:
          - {{op: Rearrange, name: r}}
        """


def _names(sym: ast.expr | None) -> set[str]:
    assert sym is not None
    return {n.id for n in ast.walk(sym) if isinstance(n, ast.Name)}


@pytest.mark.parametrize(("op", "shape", "written", "reference"), CASES)
def test_rule_matches_torch_and_keeps_symbolic_sizes(
    op: str, shape: list[int], written: str, reference: Callable
) -> None:
    spec = compile_text(_block_spec(op, shape, written))
    (block,) = spec.compiled.blocks
    (call,) = block.calls
    got = call.value
    want = reference(torch.empty(BATCH, *shape, device="meta"))
    values = got.items if isinstance(want, tuple) else (got,)  # type: ignore[union-attr]
    wanted = want if isinstance(want, tuple) else (want,)
    assert len(values) == len(wanted)
    for value, tensor in zip(values, wanted):
        assert isinstance(value, TensorValue)
        assert value.shape == tuple(tensor.shape)
        assert value.batch_dim == list(tensor.shape).index(BATCH)
        for k, sym in enumerate(value.sym):
            # Every size in the block's own terms, where torch's sizes follow one rule.
            if k != value.batch_dim and (op, written) not in SHAPES_ONLY:
                assert _names(sym) <= SIZES, (k, ast.unparse(sym))  # type: ignore[arg-type]
    # The generated call runs as written (keywords too) and gives torch's values.
    x = torch.randn(2, *shape)
    out, expected = _tensors(spec.build()(x)), _tensors(reference(x))
    assert len(out) == len(expected)
    for a, b in zip(out, expected):
        torch.testing.assert_close(a, b)


def _tensors(value: T | tuple[T, ...]) -> tuple[T, ...]:
    return value if isinstance(value, tuple) else (value,)


def test_moved_sizes_are_the_right_parameters() -> None:
    # [B, C, H, W] -> [B, H, W, C]: the last size is the channels, not the width.
    spec = compile_text(_block_spec("permute", [3, 4, 5], "args: [[0, 2, 3, 1]]"))
    value = spec.compiled.blocks[0].calls[0].value
    assert isinstance(value, TensorValue)
    assert [ast.unparse(s) for s in value.sym[1:]] == [  # type: ignore[arg-type]
        "in_height", "in_width", "in_channels",
    ]  # fmt: skip


def test_an_inferred_size_is_a_quotient_of_the_input() -> None:
    spec = compile_text(_block_spec("unflatten", [12, 5], "args: [1, [3, -1]]"))
    value = spec.compiled.blocks[0].calls[0].value
    assert isinstance(value, TensorValue)
    assert ast.unparse(value.sym[2]) == "in_dim1 // 3"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("node", "column", "words"),
    [
        ("{op: transpose, name: n, dim0: 1, dim1: 4}", 45,
         ["(transpose", "dim1=4 is out of range", "-4..3"]),
        ("{op: transpose, name: n, args: [1, -5]}", 5,
         ["(transpose", "dim1=-5 is out of range"]),
        ("{op: permute, name: n, dims: [0, 1, 1, 2]}", 34,
         ["(permute", "name a dimension twice"]),
        ("{op: movedim, name: n, source: [1, 2], destination: [3]}", 57,
         ["(movedim", "2 dims from source but 1"]),
        ("{op: unflatten, name: n, dim: 1, sizes: [5, -1]}", 45,
         ["(unflatten", "[5, -1] does not multiply to 3"]),
        ("{op: Unflatten, name: n, dim: 1, unflattened_size: [-1, -1]}", 56,
         ["(Unflatten", "more than one -1"]),
        ("{op: select, name: n, dim: 2, index: 8}", 42,
         ["(select", "index=8 is out of range for dim 2", "of size 8"]),
        ("{op: split, name: n, split_size_or_sections: [2, 2], dim: 1}", 50,
         ["(split", "add up to 4, but dim 1", "is 3"]),
        ("{op: chunk, name: n, chunks: 2, dim: 5}", 42,
         ["(chunk", "dim must be in -4..3"]),
        ("{op: unsqueeze, name: n, dim: -6}", 35,
         ["(unsqueeze", "dim=-6 is out of range", "-5..4"]),
        ("{op: squeeze, name: n, dim: 7}", 33, ["(squeeze", "out of range"]),
        ("{op: reshape, name: n, shape: [-1, 5]}", 5, ["(reshape", "[B,3,8,8]"]),
    ],
)  # fmt: skip
def test_wrong_input_is_reported_at_the_node(
    node: str, column: int, words: list[str]
) -> None:
    expect_error(
        f"""
        inputs: {{x: [3, 8, 8]}}
        layers:
          - {node}
        """,
        5, column, *words,
    )  # fmt: skip


def test_batch_dimension_and_uncovered_forms_run_on_meta() -> None:
    # Splitting the batch, or a reshape that folds it into another size: torch decides.
    spec = compile_text(
        """
        inputs: {x: [4, 6]}
        layers:
          - {op: split, name: s, args: [3]}
          - {op: reshape, name: r, in: x, args: [[-1, 3]]}
          - {op: select, name: first, in: x, args: [0, 0]}
        """
    )
    split, folded, first = (c.value for c in spec.compiled.model.calls)
    assert [v.shape for v in split.items] == [(3, 4, 6), (3, 4, 6), (1, 4, 6)]  # type: ignore[union-attr]
    assert isinstance(folded, TensorValue)
    assert folded.shape == (56, 3) and folded.batch_dim is None
    assert isinstance(first, TensorValue)
    assert first.shape == (4, 6) and first.batch_dim is None


CHANNEL_NORM = """
    inputs: {x: [8, 6, 6]}
    blocks:
      ChannelNorm:
        params: {out: {type: int}}
        layers:
          - {op: permute, name: last, args: [[0, 2, 3, 1]]}
          - {op: LayerNorm, name: norm}
          - {op: permute, name: first, args: [[0, 3, 1, 2]]}
          - {op: Conv2d, name: conv, out_channels: "${out}", kernel_size: 1}
    layers:
      - {op: ChannelNorm, name: block, out: 4}
    """


class _ChannelNorm(nn.Module):
    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv2d(channels, out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.conv(x)


def test_channels_last_norm_takes_only_its_input_size_and_param() -> None:
    spec = compile_text(CHANNEL_NORM)
    (block,) = spec.compiled.blocks
    assert [p.name for p in block.params] == ["in_channels", "out"]
    assert "ChannelNorm(in_channels=8, out=4)" in spec.source()
    model = spec.build()
    reference = _ChannelNorm(8, 4)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_()
    model.block.load_state_dict(reference.state_dict())  # the same keys
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(model(x), reference(x))
    # The class stands on its own with other sizes.
    other = type(model.block)(in_channels=16, out=3)
    assert other(torch.randn(2, 16, 5, 7)).shape == (2, 3, 5, 7)


@pytest.mark.parametrize(
    "node",
    [
        "{op: transpose, name: n, args: [1, 2], dim0: 1}",
        "{op: movedim, name: n, source: 1, destination: [2]}",
        "{op: squeeze, name: n, dim: null}",
        "{op: squeeze, name: n, dim: [1, -3]}",
    ],
)
def test_forms_torch_refuses_are_left_to_torch(node: str) -> None:
    # A rule must not make up an output where torch has none.
    expect_error(
        f"""
        inputs: {{x: [3, 8, 8]}}
        layers:
          - {node}
        """,
        5, 5, "node 'n' (", "inputs: [B,3,8,8]",
    )  # fmt: skip


def test_square_transpose_swaps_the_sizes_too() -> None:
    # [B, 4, 4] transposed has the same shape: its sizes still trade places, so the
    # Linear after it takes in_dim1, and the class is right for non-square inputs.
    spec = compile_text(
        """
        inputs: {x: [4, 4]}
        blocks:
          Mix:
            layers:
              - {op: transpose, args: [1, 2]}
              - {op: Linear, name: fc, out_features: 3}
        layers:
          - {op: Mix, name: mix}
        """
    )
    assert "nn.Linear(in_dim1, 3)" in spec.source()
    other = type(spec.build().mix)(in_dim1=5)
    assert other(torch.randn(2, 5, 6)).shape == (2, 6, 3)
