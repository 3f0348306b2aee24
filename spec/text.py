"""Small text helpers for messages, shared by every stage."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when it has none),
    cut at ``limit`` characters: what a one-line error says of the cause."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= limit else first[:limit] + "..."
