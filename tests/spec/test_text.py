"""first_line: what a one-line error says of its cause."""

from __future__ import annotations

from nnspec.spec.text import first_line


def test_first_line_of_a_message() -> None:
    assert first_line(ValueError("  bad shape\n  at layer 3\n")) == "bad shape"


def test_a_message_less_exception_is_named_by_its_type() -> None:
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError("\n\n")) == "OSError"


def test_a_long_line_is_cut() -> None:
    assert first_line(RuntimeError("x" * 20), limit=8) == "xxxxxxxx..."
    assert first_line(RuntimeError("x" * 8), limit=8) == "x" * 8
