"""A repeat whose count is a block param: the block's class builds as many copies
as its constructor is told, and its signature never names a count it ignores."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import nnspec
from tests.compiler.ruff import ruff_check, ruff_format_check
from tests.helpers import expect_error
from tests.security.ast_allowlist import check_generated_source

STACK = """\
nnspec: 1
name: Net
inputs: {x: [6]}
blocks:
  Stack:
    params: {depth: {type: int}, width: 8}
    layers:
      - {op: Linear, name: stack, out_features: "${width}", repeat: "${depth}"}
      - {op: Dropout, name: drops, p: 0.0, repeat: "${depth}"}
layers:
  - {op: Stack, name: body, depth: 3}
"""


def _block_class(spec: nnspec.Spec, name: str) -> type[nn.Module]:
    module = sys.modules[spec.module_class().__module__]
    cls = getattr(module, name)
    assert isinstance(cls, type) and issubclass(cls, nn.Module)
    return cls


def _linears(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Linear) for m in module.modules())


def test_the_block_class_builds_as_many_copies_as_it_is_told() -> None:
    spec = nnspec.loads(STACK)
    stack = _block_class(spec, "Stack")
    for depth in (1, 2, 3, 5):
        built = stack(in_features=6, depth=depth)
        assert _linears(built) == depth
        assert len(built.drops) == depth
        x = torch.randn(2, 6)
        assert built(x).shape == (2, 8)
    wide = stack(in_features=4, depth=2, width=16)
    assert [m.out_features for m in wide.stack] == [16, 16]
    assert wide.stack[0].in_features == 4 and wide.stack[1].in_features == 16


def test_the_spec_value_keeps_its_keys_and_outputs() -> None:
    spec = nnspec.loads(STACK)
    model = spec.build()
    keys = [f"body.stack.{k}.{p}" for k in range(3) for p in ("weight", "bias")]
    assert list(model.state_dict()) == keys
    reference = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    reference.load_state_dict(
        {k.removeprefix("body.stack."): v for k, v in model.state_dict().items()}
    )
    model.eval()
    x = torch.randn(4, 6)
    assert_close(model(x), reference(x))


def test_the_source_reads_as_written_and_passes_the_checks(tmp_path: Path) -> None:
    source = nnspec.loads(STACK).source()
    assert "def __init__(self, *, in_features: int, depth: int, width: int = 8)" in (
        source
    )
    assert (
        "nn.Linear(in_features, width),\n"
        "            *(nn.Linear(width, width) for _ in range(depth - 1)),\n"
    ) in source
    assert "nn.Sequential(*(nn.Dropout(p=0.0) for _ in range(depth)))" in source
    assert "self.body = Stack(in_features=6, depth=3)" in source
    check_generated_source(source)
    path = tmp_path / "stack.py"
    path.write_text(source, encoding="utf-8")
    assert ruff_format_check([path]) is None
    assert ruff_check([path]) is None


def test_copies_that_read_their_index_stay_written_out() -> None:
    text = STACK.replace('p: 0.0, repeat: "${depth}"', 'p: "${0.1 * i}", repeat: 3')
    source = nnspec.loads(text).source()
    assert "nn.Dropout(p=0.0), nn.Dropout(p=0.1), nn.Dropout(p=0.2)" in source


TWO_USES = STACK.replace(
    "  - {op: Stack, name: body, depth: 3}\n",
    "  - {op: Stack, name: body, depth: 3}\n  - {op: Stack, name: more, depth: 5}\n",
)


def test_uses_that_differ_only_in_the_count_share_one_class() -> None:
    spec = nnspec.loads(TWO_USES)
    assert spec.source().count("class Stack(") == 1
    model = spec.build()
    assert len(model.body.stack) == 3 and len(model.more.stack) == 5
    assert model(torch.randn(2, 6)).shape == (2, 8)
    rows = {r.name: r for r in spec.summary().rows}
    assert len(rows["more"].children[0].children) == 5


def test_uses_with_one_copy_and_more_still_differ() -> None:
    text = TWO_USES.replace("depth: 3}", "depth: 1}")
    expect_error(
        text.split("\n", 2)[2],
        12,
        5,
        "block Stack builds different layers here",
        "line 11",
    )


NESTED = """\
nnspec: 1
name: Net
inputs: {x: [6]}
blocks:
  Stack:
    params: {depth: 2}
    layers:
      - {op: Linear, name: stack, out_features: 6, repeat: "${depth}"}
  Tower:
    params: {levels: 2}
    layers:
      - {op: Stack, name: inner, depth: "${levels + 1}"}
layers:
  - {op: Tower, name: tower, levels: 2}
"""


def test_a_count_passed_down_through_blocks_is_honoured() -> None:
    spec = nnspec.loads(NESTED)
    assert "self.inner = Stack(in_features=in_features, depth=levels + 1)" in (
        spec.source()
    )
    tower = _block_class(spec, "Tower")
    assert _linears(tower(in_features=6, levels=4)) == 5
    assert list(spec.build().state_dict())[-1] == "tower.inner.stack.2.bias"


@pytest.mark.parametrize("depth", [1, 4])
def test_the_spec_compiles_for_other_counts(depth: int) -> None:
    model = nnspec.loads(STACK.replace("depth: 3}", f"depth: {depth}}}")).build()
    assert _linears(model) == depth


BUILT_FOR = """\
nnspec: 1
name: Net
inputs: {x: [8]}
blocks:
  One:
    params: {depth: {type: int}}
    layers:
      - {op: Linear, name: stack, out_features: 8, repeat: "${depth}"}
  Twice:
    params: {times: 2, width: 8}
    layers:
      - {op: mul, args: [2.0], repeat: "${times}"}
      - {op: Linear, name: out, out_features: "${width}"}
  Indexed:
    params: {depth: 2}
    layers:
      - {op: Dropout, name: drop, p: "${0.1 * i}", repeat: "${depth}"}
  Outer:
    params: {n: 2, m: 2}
    layers:
      - {op: Twice, name: twice, times: "${n + 1}", width: "${m * 4}"}
layers:
  - {op: One, name: one, depth: 1}
  - {op: Twice, name: twice, times: 3}
  - {op: Indexed, name: indexed}
  - {op: Outer, name: outer}
"""


def _takes(cls: type[nn.Module]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def test_a_count_the_copies_cannot_follow_is_not_a_parameter() -> None:
    spec = nnspec.loads(BUILT_FOR)
    assert _takes(_block_class(spec, "One")) == {"in_features"}
    assert _takes(_block_class(spec, "Twice")) == {"in_features", "width"}
    assert _takes(_block_class(spec, "Indexed")) == set()
    assert _takes(_block_class(spec, "Outer")) == {"in_features", "m"}
    source = spec.source()
    check_generated_source(source)
    assert "self.one = One(in_features=8)\n" in source
    assert "self.twice = Twice(in_features=in_features, width=m * 4)\n" in source
    assert source.count("x = torch.mul(x, 2.0)") == 3
    assert "nn.Sequential(nn.Dropout(p=0.0), nn.Dropout(p=0.1))" in source
    model = spec.build()
    x = torch.randn(2, 8)
    model.eval()
    expected = model.outer.twice.out(model.twice.out(model.one.stack(x) * 8.0) * 8.0)
    assert_close(model(x), expected)
