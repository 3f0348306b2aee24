"""Structural validation: every mistake at once, each at its position, with suggestions."""

from __future__ import annotations

import pytest

from nnspec.spec import SpecError, parse_yaml, validate_document


def errors(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate_document(parse_yaml(text, "v.yaml"))
    return info.value


def test_unknown_key_with_suggestion_at_the_key() -> None:
    err = errors("nnspec: 1\nname: Net\ninputs: {x: [3]}\nlayrs: [ReLU]\n")
    messages = [(d.line, d.column, d.message) for d in err.diagnostics]
    assert messages[0][:2] == (1, 1)
    assert "missing the required key 'layers'" in messages[0][2]
    assert messages[1][:2] == (4, 1)
    assert "unknown key 'layrs'" in messages[1][2]
    assert "did you mean 'layers'?" in messages[1][2]


def test_all_structural_errors_are_reported_together() -> None:
    text = (
        "nnspec: 2\n"
        "name: lowercase\n"
        "inputs: {x: [3, 0]}\n"
        "layers:\n"
        "  - {op: Conv2d, name: Conv-1}\n"
        "  - {op: 5}\n"
    )
    err = errors(text)
    where = [(d.line, d.column) for d in err.diagnostics]
    assert where == [(1, 9), (2, 7), (3, 17), (5, 24), (6, 10)]
    text_all = str(err)
    assert "expected 1, received number 2" in text_all
    assert "CapWords" in text_all
    assert "expected at least 1, received 0" in text_all
    assert "expected an identifier" in text_all
    assert "received number 5" in text_all
    assert str(err).count("v.yaml:") == 5


def test_identical_mistakes_are_each_reported_at_their_own_line() -> None:
    # Identical nodes are checked against the schema once; a mistake is still reported
    # at every node that makes it, here and inside a block.
    text = (
        "nnspec: 1\nname: Net\ninputs: {x: [3]}\n"
        "blocks:\n"
        "  B:\n"
        "    layers:\n"
        "      - {op: ReLU, in: 3}\n"
        "      - {op: ReLU, in: 3}\n"
        "layers:\n"
        "  - {op: ReLU, in: 3}\n"
        "  - ReLU\n"
        "  - {op: ReLU, in: 3}\n"
    )
    err = errors(text)
    assert [(d.line, d.column) for d in err.diagnostics] == [
        (7, 24),
        (8, 24),
        (10, 20),
        (12, 20),
    ]


def test_nodes_equal_in_python_but_of_other_types_are_each_checked() -> None:
    # 1 == True in Python; the schema tells them apart, so must the check.
    text = (
        "nnspec: 1\nname: Net\ninputs: {x: [3]}\n"
        "layers:\n"
        "  - {op: ReLU, repeat: 1}\n"
        "  - {op: ReLU, repeat: true}\n"
    )
    err = errors(text)
    assert [d.line for d in err.diagnostics] == [6]
    assert "received boolean true" in err.message


def test_a_spec_must_be_a_mapping() -> None:
    err = errors("- ReLU\n")
    assert err.message.startswith("a spec is a mapping")


def test_error_renders_source_line_and_caret() -> None:
    err = errors("nnspec: 1\nname: Net\ninputs: {x: [3]}\nlayers: [ReLU]\nlayer: 1\n")
    rendered = err.render()
    assert rendered.splitlines() == [
        "v.yaml:5:1: error: unknown key 'layer' in the spec (did you mean 'layers'?); "
        "known keys: blocks, doc, extends, freeze, init, inputs, insert_after, "
        "insert_before, layers, name, nnspec, outputs, params, remove, replace, train, weights",
        "    layer: 1",
        "    ^",
    ]
