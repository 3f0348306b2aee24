"""Property: whatever is done to a valid spec, the only exception is SpecError, with a line.

Mutations delete, duplicate and retype keys, swap references and insert nodes; raw text
is also thrown at the loader. ``NNSPEC_FUZZ_EXAMPLES`` sets the number of examples
(default 300; it has been run with 3000).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.spec.errors import SpecError

EXAMPLES = int(os.environ.get("NNSPEC_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BASES = [
    """
nnspec: 1
name: Small
params: {classes: 10, width: 16}
inputs: {x: [3, 16, 16]}
layers:
  - {op: Conv2d, name: conv1, out_channels: "${width}", kernel_size: 3, padding: 1}
  - BatchNorm2d
  - ReLU
  - {op: MaxPool2d, kernel_size: 2}
  - Flatten
  - {op: Linear, name: fc, out_features: "${classes}"}
init:
  - {match: Conv2d, weight: xavier_normal, bias: {constant: 0.1}}
  - {match: "fc*", weight: {normal: {mean: 0.0, std: 0.01}}}
freeze: [conv1]
""",
    """
nnspec: 1
name: Blocks
inputs: {x: [3, 16, 16], skip: [4, 32, 32]}
blocks:
  Double:
    params: {out: {type: int}, mid: null}
    layers:
      - {op: Conv2d, out_channels: "${mid or out}", kernel_size: 3, padding: 1}
      - {op: Conv2d, out_channels: "${out}", kernel_size: 3, padding: 1}
  Up:
    params: {out: 4}
    inputs: [x, skip]
    layers:
      - {op: Upsample, name: up, in: x, scale_factor: 2}
      - {op: cat, in: [skip, up], dim: 1}
      - {op: Double, name: conv, out: "${out}", mid: "${cat.shape[1] // 2}"}
layers:
  - {op: Double, name: inc, out: 8, repeat: 2}
  - {op: Up, name: up1, in: [inc, skip], out: 4}
outputs: [up1, inc]
""",
    """
nnspec: 1
name: Heads
inputs: {x: [32], extra: [1], tokens: {shape: [5], dtype: int64}}
layers:
  - {op: Linear, name: trunk, out_features: 16}
  - ReLU
  - {op: Linear, name: shared, out_features: 16}
  - {op: add, name: res, in: [shared, trunk]}
  - {use: shared, name: again}
  - {op: cat, name: joined, in: [again, extra], dim: 1}
  - {op: Embedding, in: tokens, num_embeddings: 10, embedding_dim: 8}
  - {op: LSTM, hidden_size: 6, batch_first: true}
  - {op: mean, in: lstm.0, dim: 1}
  - {op: Linear, name: head, in: joined, out_features: 3}
outputs: {logits: head, features: trunk, seq: mean}
""",
]
BASE_DATA = [yaml.safe_load(text) for text in BASES]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "x",
            "ReLU",
            "Conv2d",
            "cat",
            "lstm.0",
            "trunk",
            "up",
            "inc.1",
            "${",
            "${i}",
            "${x.shape[1]}",
            "${classes * 2}",
            "${nope}",
            "a${width}b",
            "${width // 0}",
            "${__import__('os')}",
            "pkg.mod:Thing",
            "xavier_normal",
            "name",
            "in",
            "op",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["op", "name", "in", "p", "dim", "out"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(
    ["op", "name", "in", "args", "repeat", "use", "out", "dim", "kernel_size", "layers",
     "blocks", "outputs", "params", "inputs", "match", "weight", "bias", "shape", "dtype"]
)  # fmt: skip


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths(value, (*prefix, i))
    return found


def at(data: Any, path: tuple) -> Any:
    for step in path:
        data = data[step]
    return data


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    for _ in range(draw(st.integers(1, 3))):
        targets = paths(data)[1:]
        path = draw(st.sampled_from(targets))
        parent, key = at(data, path[:-1]), path[-1]
        action = draw(st.sampled_from(["delete", "retype", "add", "duplicate", "swap"]))
        if action == "delete":
            del parent[key]
        elif action == "retype":
            parent[key] = draw(VALUES)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), copy.deepcopy(parent[key]))
        elif action == "swap":
            other = draw(st.sampled_from(targets))
            if other[: len(path)] != path and path[: len(other)] != other:
                other_parent = at(data, other[:-1])
                parent[key], other_parent[other[-1]] = (
                    other_parent[other[-1]],
                    parent[key],
                )
    return yaml.safe_dump(data, sort_keys=False)


def check(text: str) -> None:
    try:
        nnspec.loads(text, path="fuzz.yaml").build(device="meta")
    except SpecError as err:
        assert err.diagnostics
        for diag in err.diagnostics:
            assert diag.line >= 1, str(err)
            assert diag.column >= 1, str(err)
            assert diag.message


@SETTINGS
@given(mutated_specs())
def test_mutated_specs_fail_only_with_positioned_spec_errors(text: str) -> None:
    check(text)


YAMLISH = st.text(alphabet="{}[]:,-&*!|>'\"#%@` \n\tabxyz019.${}", max_size=120)


@settings(max_examples=max(EXAMPLES, 100), deadline=None)
@given(YAMLISH)
def test_random_text_fails_only_with_positioned_spec_errors(text: str) -> None:
    check("nnspec: 1\nname: Net\n" + text)
