"""Errors in a spec, each with the position of the YAML node that caused it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Diagnostic", "SpecError", "describe_value", "quotable", "suggest"]


@dataclass(frozen=True)
class Diagnostic:
    """One mistake in a spec: where it is and what is wrong.

    ``line`` and ``column`` count from 1, as editors do; 0 means unknown.
    """

    path: str
    line: int
    column: int
    message: str
    source: str | None = field(
        default=None, compare=False, repr=False
    )  # its file's text

    def __str__(self) -> str:
        if self.line < 1:  # about the file as a whole (it cannot be read)
            return f"{self.path}: error: {self.message}"
        return f"{self.path}:{self.line}:{self.column}: error: {self.message}"

    def render(self, source: str | None = None) -> str:
        """The error line, followed by the offending source line and a caret."""
        text = str(self)
        source = self.source if self.source is not None else source
        if source is None or self.line < 1 or not quotable(self.path):
            return text
        lines = source.splitlines()
        if self.line > len(lines):
            return text
        src = lines[self.line - 1].rstrip()
        caret = " " * max(self.column - 1, 0) + "^"
        return f"{text}\n    {src}\n    {caret}"


class SpecError(Exception):
    """A mistake in a spec. Holds one or more diagnostics, the first one foremost.

    ``path``, ``line``, ``column`` and ``message`` describe the first diagnostic;
    ``diagnostics`` lists them all, in document order.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        path: str = "<spec>",
        line: int = 0,
        column: int = 0,
        diagnostics: Iterable[Diagnostic] | None = None,
        source: str | None = None,
    ) -> None:
        diags = list(diagnostics or [])
        if message is not None:
            diags.insert(0, Diagnostic(path, line, column, message))
        if not diags:
            raise ValueError("SpecError needs a message or diagnostics")
        self.diagnostics: list[Diagnostic] = diags
        self.source = source
        first = diags[0]
        self.path, self.line, self.column, self.message = (
            first.path,
            first.line,
            first.column,
            first.message,
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)

    def render(self) -> str:
        """Every diagnostic with its source line and a caret beneath the column."""
        return "\n".join(d.render(self.source) for d in self.diagnostics)


def quotable(path: str) -> bool:
    """Whether errors may quote lines of the file at ``path``: a spec file (named
    .yaml or .yml) or a text given in memory (``<string>``), never another file, which
    could be anything (a file of credentials given by mistake)."""
    return path.endswith((".yaml", ".yml")) or (
        path.startswith("<") and path.endswith(">")
    )


def describe_value(value: Any) -> str:
    """How an error names a received value: "string 'three'", "number 2.5", "a list"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def suggest(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest candidate, or '' when none is close.

    Candidates equally close are all named (at most three): ``BatchNorm`` ->
    "did you mean 'BatchNorm1d', 'BatchNorm2d' or 'BatchNorm3d'?".
    """
    names = sorted({c for c in candidates if isinstance(c, str) and c != word})
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)
    scored: list[tuple[float, str]] = []
    for name in names:
        matcher.set_seq1(name)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratio = matcher.ratio()
            if ratio >= 0.6:
                scored.append((ratio, name))
    best: list[str] = []
    if scored:
        top = max(ratio for ratio, _ in scored)
        best = [name for ratio, name in scored if ratio == top][:3]
    else:
        lowered = {c.lower(): c for c in names}
        best = [lowered[word.lower()]] if word.lower() in lowered else []
    if not best:
        return ""
    shown = [repr(name) for name in best]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f" (did you mean {listed}?)"
