"""YAML syntax errors said in a spec's terms, at the place where the fix goes.

PyYAML (and libyaml, its C twin) report a syntax error as a type (scanner or
parser), the construct being read (the *context*, with the mark where it began) and
what went wrong there (the *problem*, with its mark). The two implementations word
the problem differently, so it is never read: a rule is chosen by the error's type
and context, and the marks and the text of the spec do the rest. A rule can decline
(it returns None); the error then reads as PyYAML words it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from .errors import SpecError

__all__ = ["problem_text", "syntax_error"]


def problem_text(exc: yaml.YAMLError) -> str:
    """PyYAML's own words for a problem, on one line."""
    problem = getattr(exc, "problem", None) or str(exc)
    return " ".join(str(problem).split())


@dataclass
class _Failure:
    """A syntax error in the text it was found in."""

    opened: yaml.Mark | None  # where the construct being read began
    mark: yaml.Mark | None  # where reading it failed
    source: str
    lines: list[str]

    def char(self, mark: yaml.Mark) -> str:
        return self.source[mark.index] if mark.index < len(self.source) else ""


#: A rule: the message and where it points, or None to leave the error as it is.
_Rule = Callable[[_Failure], tuple[str, yaml.Mark] | None]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _next_content_line(lines: list[str], after: int) -> int | None:
    """The index of the first line after ``after`` holding more than a comment."""
    for i in range(after + 1, len(lines)):
        text = lines[i].strip()
        if text and not text.startswith("#"):
            return i
    return None


def _at(mark: yaml.Mark, column: int) -> yaml.Mark:
    """The same line as ``mark``, another column."""
    return yaml.Mark(
        mark.name, mark.index - mark.column + column, mark.line, column, None, None
    )


def _flow(left: str, right: str) -> _Rule:
    def rule(failure: _Failure) -> tuple[str, yaml.Mark] | None:
        opened, mark, lines = failure.opened, failure.mark, failure.lines
        if opened is None or mark is None:
            return None
        following = _next_content_line(lines, opened.line)
        # A collection that runs past its line into text indented no deeper was
        # meant to close on its line: point at the bracket that opened it.
        if mark.line != opened.line and (
            following is None
            or _indent(lines[following]) <= _indent(lines[opened.line])
        ):
            where = "the end" if following is None else f"line {following + 1}"
            return (
                f"this {left!r} is not closed: expected {right!r} before {where}",
                opened,
            )
        # 'a: 1\n b: 2' reads as the value '1 b' and fails at the second ':'; the
        # comma belongs before the key that starts this line.
        text = lines[mark.line][: mark.column] if mark.line < len(lines) else ""
        key = text.strip()
        if mark.line != opened.line and re.fullmatch(r"[\w.-]+", key):
            return (
                f"expected ',' or {right!r} before {key!r}: is a comma missing at "
                f"the end of line {mark.line}?",
                _at(mark, mark.column - len(text.lstrip())),
            )
        return (
            f"expected ',' or {right!r} here, inside the {left!r} opened at "
            f"line {opened.line + 1}, column {opened.column + 1}",
            mark,
        )

    return rule


def _unclosed_quote(failure: _Failure) -> tuple[str, yaml.Mark] | None:
    mark, opened = failure.mark, failure.opened
    if mark is None or opened is None or mark.index < len(failure.source):
        return None  # not the end of the text: a bad escape, say
    return "this quote is not closed before the end of the document", opened


def _bad_character(failure: _Failure) -> tuple[str, yaml.Mark] | None:
    if failure.mark is None:
        return None
    char = failure.char(failure.mark)
    if char == "\t":
        return "a tab cannot indent YAML; indent with spaces", failure.mark
    return f"{char!r} cannot start a YAML value; put the value in quotes", failure.mark


def _misplaced(item: str, kind: str) -> _Rule:
    def rule(failure: _Failure) -> tuple[str, yaml.Mark] | None:
        opened, mark = failure.opened, failure.mark
        if opened is None or mark is None:
            return None
        return (
            f"expected {item} at column {opened.column + 1}, like the {kind} that "
            f"starts at line {opened.line + 1}; check the indentation",
            mark,
        )

    return rule


def _stray_colon(failure: _Failure) -> tuple[str, yaml.Mark] | None:
    if failure.opened is not None or failure.mark is None:
        return None
    if failure.char(failure.mark) != ":":
        return None  # another indicator out of place: '-', '?'
    return (
        "a ':' followed by a space cannot appear here; put the value in quotes "
        "if it contains ': ', or check the indentation",
        failure.mark,
    )


#: (error type, context) -> rule. The contexts name constructs of the YAML
#: grammar, the same in both implementations.
_RULES: dict[tuple[type[yaml.MarkedYAMLError], str | None], _Rule] = {
    (yaml.parser.ParserError, "while parsing a flow mapping"): _flow("{", "}"),
    (yaml.parser.ParserError, "while parsing a flow sequence"): _flow("[", "]"),
    (yaml.parser.ParserError, "while parsing a block mapping"): _misplaced(
        "a key", "mapping"
    ),
    (yaml.parser.ParserError, "while parsing a block collection"): _misplaced(
        "a '-' item", "list"
    ),
    (yaml.scanner.ScannerError, "while scanning a quoted scalar"): _unclosed_quote,
    (yaml.scanner.ScannerError, "while scanning for the next token"): _bad_character,
    (yaml.scanner.ScannerError, None): _stray_colon,
}


def syntax_error(exc: yaml.MarkedYAMLError, source: str, path: str) -> SpecError:
    """A YAML syntax error, said in the spec's terms and placed where the fix goes."""
    context = " ".join(exc.context.split()) if exc.context else None
    problem = problem_text(exc)
    mark = exc.problem_mark or exc.context_mark
    message = f"{context}: {problem}" if context and exc.problem else problem
    rule = _RULES.get((type(exc), context))
    failure = _Failure(exc.context_mark, mark, source, source.splitlines())
    rewritten = rule(failure) if rule is not None else None
    if rewritten is not None:
        message, mark = rewritten
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return SpecError(
        f"YAML syntax: {message}", path=path, line=line, column=column, source=source
    )
