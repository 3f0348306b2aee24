"""YAML syntax errors in a spec's terms: each rule's message and position, the same
whichever implementation of PyYAML (C or Python) read the text."""

from __future__ import annotations

import pytest
import yaml

from nnspec.spec import SpecError, parse_yaml
from nnspec.spec.yaml_errors import syntax_error

LOADERS = [yaml.SafeLoader]
if hasattr(yaml, "CSafeLoader"):
    LOADERS.append(yaml.CSafeLoader)

CASES = [
    # (text, line, column, message after "YAML syntax: ")
    ("a: [1, 2\nb: 3\n", 1, 4, "this '[' is not closed: expected ']' before line 2"),
    ("a: {b: 1\n", 1, 4, "this '{' is not closed: expected '}' before the end"),
    (
        "a: {b: 1\n  c: 2}\n",
        2,
        3,
        "expected ',' or '}' before 'c': is a comma missing at the end of line 1?",
    ),
    (
        "a: [1, 2}\n",
        1,
        9,
        "expected ',' or ']' here, inside the '[' opened at line 1, column 4",
    ),
    (
        "a: 'abc\nb: 2\n",
        1,
        4,
        "this quote is not closed before the end of the document",
    ),
    ("a:\n\tb: 1\n", 2, 1, "a tab cannot indent YAML; indent with spaces"),
    ("a: @x\n", 1, 4, "'@' cannot start a YAML value; put the value in quotes"),
    (
        "a:\n  b: 1\n c: 2\n",
        3,
        2,
        "expected a key at column 1, like the mapping that starts at line 1; "
        "check the indentation",
    ),
    (
        "a:\n  - 1\n  b: 2\n",
        3,
        3,
        "expected a '-' item at column 3, like the list that starts at line 2; "
        "check the indentation",
    ),
    (
        "a: b: c\n",
        1,
        5,
        "a ':' followed by a space cannot appear here; put the value in quotes if it "
        "contains ': ', or check the indentation",
    ),
]


def _error(text: str, loader: type) -> SpecError:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        list(yaml.parse(text, Loader=loader))
    return syntax_error(info.value, text, "bad.yaml")


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("text", "line", "column", "message"), CASES)
def test_rule(text: str, line: int, column: int, message: str, loader: type) -> None:
    error = _error(text, loader)
    assert (error.path, error.line, error.column) == ("bad.yaml", line, column)
    assert error.message == f"YAML syntax: {message}"


def test_parse_yaml_reports_the_rule() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("layers:\n  - {op: ReLU\n", "net.yaml")
    assert (info.value.path, info.value.line, info.value.column) == ("net.yaml", 2, 5)
    assert (
        info.value.message
        == "YAML syntax: this '{' is not closed: expected '}' before the end"
    )


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_a_quote_error_inside_the_text_is_left_as_it_is(loader: type) -> None:
    # A bad escape is no unclosed quote: the quote rule declines; the error stays
    # on the line of the value.
    error = _error('a: "x\\qy"\nb: 1\n', loader)
    assert error.line == 1 and error.column > 4
    assert error.message.startswith("YAML syntax: ")
    assert "not closed" not in error.message


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("text", ["a: - 1\n", "a: ? b\n"])
def test_a_stray_indicator_that_is_no_colon_is_left_as_it_is(
    text: str, loader: type
) -> None:
    error = _error(text, loader)
    assert (error.line, error.column) == (1, 4)
    assert "':'" not in error.message and error.message.startswith("YAML syntax: ")
