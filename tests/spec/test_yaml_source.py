"""YAML loading: positions, duplicate keys, safety limits."""

from __future__ import annotations

import pytest

from nnspec.spec import SpecError, parse_yaml
from nnspec.spec.yaml_source import MAX_DEPTH


def test_positions_of_values_and_keys() -> None:
    doc = parse_yaml("a: 1\nlayers:\n  - {op: Conv2d, k: 3}\n  - ReLU\n", "s.yaml")
    assert doc.data == {"a": 1, "layers": [{"op": "Conv2d", "k": 3}, "ReLU"]}
    assert doc.where(("layers", 0, "k")) == (3, 21)
    assert doc.where(("layers", 0, "k"), key=True) == (3, 18)
    assert doc.where(("layers", 1)) == (4, 5)
    # An unknown step falls back to the nearest ancestor.
    assert doc.where(("layers", 0, "missing", 2)) == (3, 5)


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("name: A\ninputs: {}\nname: B\n", "d.yaml")
    assert (info.value.line, info.value.column) == (3, 1)
    assert "duplicate key 'name' (first given at line 1)" in info.value.message


def test_syntax_error_position() -> None:
    # The list never closes on its line: the error is at its '['.
    with pytest.raises(SpecError) as info:
        parse_yaml("a: [1, 2\nb: 3\n", "bad.yaml")
    assert info.value.path == "bad.yaml"
    assert (info.value.line, info.value.column) == (1, 4)
    assert info.value.message.startswith("YAML syntax: this '[' is not closed")


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("a: !!python/object/apply:os.system ['echo hi']\n", "evil.yaml")
    assert (info.value.line, info.value.column) == (1, 4)
    assert "'!!python/object/apply:os.system' is not allowed" in info.value.message


def test_alias_bomb_fails_fast() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(SpecError) as info:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert "alias" in info.value.message


def test_deep_nesting_is_an_error() -> None:
    text = "a: " + "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2) + "\n"
    with pytest.raises(SpecError) as info:
        parse_yaml(text, "deep.yaml")
    assert "nesting deeper" in info.value.message


def test_non_string_keys_are_errors() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("params:\n  on: 1\n", "k.yaml")
    assert (info.value.line, info.value.column) == (2, 3)
    assert "put it in quotes" in info.value.message


def test_empty_document() -> None:
    with pytest.raises(SpecError, match="empty"):
        parse_yaml("# nothing\n", "e.yaml")


def test_merge_keys_are_supported() -> None:
    doc = parse_yaml("base: &b {k: 3, s: 1}\nconv: {<<: *b, s: 2}\n")
    assert doc.data["conv"] == {"k": 3, "s": 2}


def test_merge_keys_count_toward_the_node_limit() -> None:
    # Merged mappings are aliases too: each use counts the nodes it repeats.
    lines = ["b0: &b0 {" + ", ".join(f"k{i}: {i}" for i in range(50)) + "}"]
    for i in range(1, 5):
        keys = ", ".join(f"m{j}: {{<<: *b{i - 1}}}" for j in range(12))
        lines.append(f"b{i}: &b{i} {{{keys}}}")
    with pytest.raises(SpecError) as info:
        parse_yaml("\n".join(lines) + "\n", "merge.yaml")
    assert "YAML nodes" in info.value.message
    assert info.value.line == 5


def test_aliases_cannot_nest_past_the_depth_limit() -> None:
    deep = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    with pytest.raises(SpecError) as info:
        parse_yaml(f"a: &d {deep}\nb: [[[*d]]]\n", "alias.yaml")
    assert (info.value.line, info.value.column) == (2, 7)
    assert "through the alias *d" in info.value.message


def test_anchors_and_aliases_load_as_copies() -> None:
    doc = parse_yaml("base: &b [1, 2]\nuse: *b\nmore: {<<: {k: 3}, j: 4}\n")
    assert doc.data == {"base": [1, 2], "use": [1, 2], "more": {"k": 3, "j": 4}}
    # An aliased value is positioned where it is written: at its anchor.
    assert doc.where(("use",)) == (1, 7)
