"""Property: whatever is done to a valid spec, the only exception is SpecError, with a line;
and a spec that compiles gives source that passes the AST allowlist of generated code.

Mutations delete, duplicate and retype keys, swap references and insert nodes; raw text
is also thrown at the loader. Targeted strategies put YAML tags in values, zero,
negative and huge numbers in every integer argument of the common ops, names that are
not identifiers in every name position, long and nested expressions, and strings that
hold placeholder-like text or line breaks. ``NNSPEC_FUZZ_EXAMPLES`` sets the number of
examples of the mutation tests (default 300; it has been run with 10,000); each targeted
test runs a tenth of that (at least 25).
"""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.spec.errors import SpecError
from tests.security.ast_allowlist import check_generated_source

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


#: A spec that takes longer than this is a hang (the fuzzer's specs take milliseconds).
HANG_SECONDS = 120


@contextmanager
def _hang_guard() -> Iterator[None]:
    """Turn a hang into a failure rather than a test run that never ends."""

    def _hung(signum: int, frame: object) -> None:
        raise AssertionError(f"a spec took over {HANG_SECONDS} s: a hang")

    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check(text: str) -> None:
    try:
        with _hang_guard():
            spec = nnspec.loads(text, path="fuzz.yaml")
            check_generated_source(spec.source())
            spec.build(device="meta")
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


# -- targeted strategies ----------------------------------------------------------------

TARGETED = settings(
    max_examples=max(EXAMPLES // 10, 25),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ARGS_BASE = """
nnspec: 1
name: Ints
params: {w: 8}
inputs: {x: [3, 16, 16], tokens: {shape: [5], dtype: int64}}
blocks:
  Pair:
    params: {width: {type: int}, mode: nearest}
    inputs: [x]
    layers:
      - {op: Conv2d, name: conv, out_channels: "${width}", kernel_size: 3, padding: 1}
      - {op: Upsample, scale_factor: 1, mode: "${mode}"}
layers:
  - {op: Conv2d, name: conv, out_channels: "${w}", kernel_size: 3, stride: 1,
     padding: 1, dilation: 1, groups: 1}
  - {op: Pair, name: pair, width: 8, repeat: 2}
  - {op: MaxPool2d, kernel_size: 2, stride: 2, padding: 0, dilation: 1}
  - {op: AvgPool2d, kernel_size: 2, stride: 1, padding: 0}
  - {op: ConvTranspose2d, out_channels: 4, kernel_size: 2, stride: 2, padding: 0,
     output_padding: 0}
  - {op: BatchNorm2d, name: bn}
  - {op: Flatten, start_dim: 1}
  - {op: Linear, name: fc, out_features: 10}
  - {op: Embedding, name: emb, in: tokens, num_embeddings: 20, embedding_dim: 6}
  - {op: LSTM, name: lstm, hidden_size: 4, num_layers: 1, batch_first: true}
  - {op: add, name: both, in: [fc, fc]}
outputs: {logits: both, seq: lstm.0}
"""
ARGS_DATA = yaml.safe_load(ARGS_BASE)
ALL_BASES = [*BASE_DATA, ARGS_DATA]


def _int_slots(data: Any) -> list[tuple]:
    """Paths of every integer in a spec: op arguments, input sizes, repeat, defaults."""
    return [p for p in paths(data) if type(at(data, p)) is int]


NUMBERS = st.sampled_from([0, -1, -2, 2**31, 2**63, 10**6, 10**12, 10**40, 1, 3])


@TARGETED
@given(st.data())
def test_numbers_in_every_integer_argument(data: st.DataObject) -> None:
    spec = copy.deepcopy(data.draw(st.sampled_from(ALL_BASES)))
    slots = _int_slots(spec)
    for path in data.draw(st.lists(st.sampled_from(slots), min_size=1, max_size=2)):
        at(spec, path[:-1])[path[-1]] = data.draw(NUMBERS)
    check(yaml.safe_dump(spec, sort_keys=False))


TAGS = st.sampled_from(
    [
        "!!bool maybe",
        "!!int four",
        "!!float half",
        "!!timestamp 2020-13-45",
        "!!timestamp 2020-01-01",
        "!!binary aGVsbG8=",
        "!!binary '!!'",
        "!!null x",
        "!!str 3",
        "!!int 0x10",
        "!!float .inf",
        "!!set {a: null}",
        "!!omap [{a: 1}]",
        "!!python/object:os.system {}",
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system ''",
        "!!python/tuple [1, 2]",
        "!unknown x",
        "!<tag:yaml.org,2002:int> 5",
    ]
)


@TARGETED
@given(st.data())
def test_yaml_tags_in_any_value(data: st.DataObject) -> None:
    spec = copy.deepcopy(data.draw(st.sampled_from(ALL_BASES)))
    path = data.draw(st.sampled_from(paths(spec)[1:]))
    at(spec, path[:-1])[path[-1]] = "TAGGED_VALUE"
    text = yaml.safe_dump(spec, sort_keys=False, width=10**6)
    check(text.replace("TAGGED_VALUE", data.draw(TAGS), 1))


BAD_NAMES = st.one_of(
    st.sampled_from(
        [
            "fc-",
            "x\n",
            "x\r",
            "a b",
            "1a",
            "",
            "_",
            "__init__",
            "__nnspec_str_0__",
            "self",
            "super",
            "torch",
            "nn",
            "F",
            "open",
            "eval",
            "class",
            "match",
            "training",
            "forward",
            "é",
            "x\u2028y",
            "x\x00",
            "Net",
            "fc.0",
            "fc.99",
            "a'b",
            'a"b',
            "a)\nimport os\n(",
            "${w}",
        ]
    ),
    st.text(max_size=6),
)


_NAMING_KEYS = {"inputs", "params", "blocks", "outputs"}


def _name_slots(data: Any) -> list[tuple[tuple, str]]:
    """(path, kind) of every name position: node names, op names, use: and in:
    references, input, output, block and param names -- "key" where a mapping key is
    the name."""
    slots: list[tuple[tuple, str]] = []
    for path in paths(data)[1:]:
        parent, last = path[:-1], path[-1]
        value = at(data, path)
        in_ref = last in ("in", "outputs") or parent[-1:] in (("in",), ("outputs",))
        block_input = parent[-1:] == ("inputs",) and isinstance(last, int)
        if (last in ("name", "use", "op") and isinstance(value, str)) or (
            (in_ref or block_input) and isinstance(value, str)
        ):
            slots.append((path, "value"))
        if parent[-1:] and parent[-1] in _NAMING_KEYS and isinstance(last, str):
            slots.append((path, "key"))
    return slots


def _rename(data: Any, path: tuple, kind: str, name: str) -> None:
    parent, last = at(data, path[:-1]), path[-1]
    if kind == "value":
        parent[last] = name
    else:  # a key: keep the order of the mapping
        items = [(name if k == last else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)


@TARGETED
@given(st.data())
def test_names_that_are_not_identifiers_in_every_name_position(
    data: st.DataObject,
) -> None:
    spec = copy.deepcopy(data.draw(st.sampled_from(ALL_BASES)))
    slots = _name_slots(spec)
    path, kind = data.draw(st.sampled_from(slots))
    _rename(spec, path, kind, data.draw(BAD_NAMES))
    check(yaml.safe_dump(spec, sort_keys=False))


@st.composite
def long_expressions(draw: st.DrawFn) -> str:
    n = draw(st.sampled_from([1, 2, 10, 50, 200, 400]))
    atom = draw(st.sampled_from(["1", "w", "x.shape[1]", "True", "'a'", "2.5"]))
    shape = draw(st.sampled_from(["sum", "parens", "unary", "not", "calls", "list"]))
    if shape == "sum":
        body = "+".join([atom] * n)
    elif shape == "parens":
        body = "(" * n + atom + ")" * n
    elif shape == "unary":
        body = "-" * n + atom
    elif shape == "not":
        body = "not " * n + atom
    elif shape == "calls":
        body = "max(" * n + atom + ", 1)" * n
    else:
        body = "[" * n + atom + "]" * n
    return "${" + body + "}"


@TARGETED
@given(st.data())
def test_long_and_nested_expressions(data: st.DataObject) -> None:
    spec = copy.deepcopy(data.draw(st.sampled_from(ALL_BASES)))
    slots = [p for p in _int_slots(spec) if "params" not in p] or _int_slots(spec)
    path = data.draw(st.sampled_from(slots))
    at(spec, path[:-1])[path[-1]] = data.draw(long_expressions())
    check(yaml.safe_dump(spec, sort_keys=False))


TRICKY_TEXT = st.one_of(
    st.sampled_from(
        [
            "__nnspec_str_0__",
            "__nnspec_str_1__",
            "'__nnspec_str_0__'",
            '"+str(1)+"',
            "\\",
            '"""',
            "'''",
            "a\nb",
            "a\rb",
            "a\r\nb",
            "a\x0cb",
            "a\x0bb",
            "a\x1cb",
            "a\x1db",
            "a\x1eb",
            "a\x85b",
            "a\u2028b",
            "a\u2029b",
            "a\x00b",
            "a\x1b[2Jb",
            "a\u202eb",
            "# comment",
            "\n)\nimport os\n(",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)


@TARGETED
@given(st.data())
def test_strings_with_placeholders_and_line_breaks(data: st.DataObject) -> None:
    spec = copy.deepcopy(data.draw(st.sampled_from([ARGS_DATA, BASE_DATA[1]])))
    text = data.draw(TRICKY_TEXT)
    where = data.draw(st.sampled_from(["doc", "block doc", "mode", "expression"]))
    block = next(iter(spec["blocks"].values()))
    if where == "doc":
        spec["doc"] = text
    elif where == "block doc":
        block["doc"] = text
    elif where == "mode" and "Pair" in spec["blocks"]:
        spec["blocks"]["Pair"]["params"]["mode"] = text
    else:
        # A string constant inside an expression of a block, next to a parameter.
        quoted = repr(text)
        node = block["layers"][-1]
        key = "mode" if node.get("op") == "Upsample" else "name_of_arg"
        if key == "mode":
            node[key] = "${" + quoted + " if " + quoted + " != 'x' else 'nearest'}"
        else:
            block.setdefault("doc", text)
    check(yaml.safe_dump(spec, sort_keys=False, allow_unicode=False))
