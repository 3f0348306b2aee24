"""Helpers for tests: compile spec text, expect errors at positions."""

from __future__ import annotations

import textwrap

import pytest

import nnspec
from nnspec.spec.errors import SpecError


def spec_text(body: str, header: str = "nnspec: 1\nname: Net\n") -> str:
    """A spec from a dedented body, with the version and name lines in front."""
    return header + textwrap.dedent(body).lstrip("\n")


def compile_text(body: str, **kwargs: object) -> nnspec.Spec:
    return nnspec.loads(spec_text(body), path="net.yaml", **kwargs)  # type: ignore[arg-type]


def expect_error(
    body: str, line: int, column: int | None, *words: str, **kwargs: object
) -> SpecError:
    """Compile and expect a SpecError at (line, column) whose message has every word."""
    with pytest.raises(SpecError) as info:
        compile_text(body, **kwargs)
    err = info.value
    assert err.path == "net.yaml"
    assert (err.line, err.column if column is not None else None) == (line, column), (
        str(err)
    )
    for word in words:
        assert word in err.message, f"{word!r} not in {err.message!r}"
    return err
