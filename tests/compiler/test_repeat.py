"""``repeat``: N chained copies of a node."""

from __future__ import annotations

import torch
from torch.testing import assert_close

import nnspec

REPEATED_FUNCTION = """\
nnspec: 1
name: Repeated
inputs: {x: [4]}
layers:
  - {op: mul, args: [2.0], repeat: 3}
  - {op: add, name: plus, in: [mul, x]}
outputs: [mul, plus]
"""


def test_a_repeated_function_is_named_by_its_last_copy() -> None:
    model = nnspec.loads(REPEATED_FUNCTION).build()
    x = torch.randn(2, 4)
    scaled, plus = model(x)
    assert_close(scaled, x * 8.0)
    assert_close(plus, x * 9.0)
