"""Printing Python source as ruff's (and black's) formatter would write it.

Expressions are printed from ASTs with double-quoted strings; a statement too long
for one line is split at its last bracket, first with the contents on one
indented line, else one item per line with a trailing comma.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable
from typing import Any

__all__ = [
    "LINE_LENGTH",
    "GeneratedSourceError",
    "expr",
    "source_text",
    "statement",
    "string_literal",
]

LINE_LENGTH = 88
_INDENT = "    "


class GeneratedSourceError(Exception):
    """The compiler produced source it should not have: a bug in nnspec, not in the spec."""


def source_text(text: str, *, newlines: bool = False) -> str:
    """``text`` safe to put in a comment or docstring: every character that is not
    printable -- line breaks of any kind (``\\r``, ``\\f``, ``\\x1c``, ``\\x85``,
    ``\\u2028`` ...), NUL, tabs, other control and format characters -- written as its
    escape sequence, so that the text stays on its line; ``\\n`` kept if ``newlines``.

    In a (non-raw) docstring the escapes read back as the characters themselves.
    """
    if text.isprintable():
        return text
    return "".join(
        ch
        if ch.isprintable() or (newlines and ch == "\n")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def string_literal(text: str) -> str:
    """A string literal, double-quoted unless that needs more escapes than single quotes."""
    body = repr(text)
    if body.startswith('"'):  # repr chose double quotes: text has ' and no "
        return body
    if '"' in text and "'" not in text:
        return body
    inner = body[1:-1].replace("\\'", "'").replace('"', '\\"')
    return f'"{inner}"'


def expr(node: ast.expr) -> str:
    """Source text of an expression, strings in double quotes."""
    printer = _SIMPLE.get(type(node))
    if printer is not None:
        return printer(node)
    return _unparse(node)


def _unparse(node: ast.expr) -> str:
    """ast.unparse, with string literals in double quotes (operators, conditionals).

    The quotes are changed token by token: each string token of ast.unparse's text is
    replaced by :func:`string_literal` of its value, so a string is only ever printed as
    one literal. The printed strings are checked against the node's string constants.
    """
    text = ast.unparse(node)
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    if any(t.start[0] != 1 for t in tokens if t.type == tokenize.STRING):
        raise GeneratedSourceError(
            f"expression printed on more than one line: {text!r}"
        )
    pieces: list[str] = []
    printed: list[str] = []
    end = 0
    for token in tokens:
        if token.type != tokenize.STRING:
            continue
        value = ast.literal_eval(token.string)
        if not isinstance(value, str):
            continue
        start, stop = token.start[1], token.end[1]
        pieces += [text[end:start], string_literal(value)]
        printed.append(value)
        end = stop
    pieces.append(text[end:])
    expected = [
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    if sorted(printed) != sorted(expected):
        raise GeneratedSourceError(f"string constants printed wrongly: {text!r}")
    return "".join(pieces)


def _constant(node: ast.Constant) -> str:
    if isinstance(node.value, str):
        return string_literal(node.value)
    return _unparse(node) if isinstance(node.value, float) else repr(node.value)


def _call(node: ast.Call) -> str:
    args = [expr(a) for a in node.args]
    args += [
        f"{k.arg}={expr(k.value)}" if k.arg else f"**{expr(k.value)}"
        for k in node.keywords
    ]
    return f"{expr(node.func)}({', '.join(args)})"


def _sequence(node: ast.List | ast.Tuple) -> str:
    items = ", ".join(expr(e) for e in node.elts)
    if isinstance(node, ast.List):
        return f"[{items}]"
    return f"({items},)" if len(node.elts) == 1 else f"({items})"


def _dict(node: ast.Dict) -> str:
    items = ", ".join(f"{expr(k)}: {expr(v)}" for k, v in zip(node.keys, node.values))  # type: ignore[arg-type]
    return f"{{{items}}}"


_SIMPLE: dict[type, Callable[[Any], str]] = {
    ast.Constant: _constant,
    ast.Name: lambda node: node.id,
    ast.Call: _call,
    ast.List: _sequence,
    ast.Tuple: _sequence,
    ast.Dict: _dict,
}


def _items(node: ast.expr) -> tuple[str, list[str], str] | None:
    """(opening text, item texts, closing text) for a bracketed expression."""
    if isinstance(node, ast.Call):
        items = [expr(a) for a in node.args]
        items += [
            f"{k.arg}={expr(k.value)}" if k.arg else f"**{expr(k.value)}"
            for k in node.keywords
        ]
        return f"{expr(node.func)}(", items, ")"
    if isinstance(node, ast.List):
        return "[", [expr(e) for e in node.elts], "]"
    if isinstance(node, ast.Tuple):
        return "(", [expr(e) for e in node.elts], ")"
    if isinstance(node, ast.Dict):
        return (
            "{",
            [f"{expr(k)}: {expr(v)}" for k, v in zip(node.keys, node.values) if k],
            "}",
        )
    return None


def _children(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.Call):
        return [*node.args, *(k.value for k in node.keywords)]
    if isinstance(node, (ast.List, ast.Tuple)):
        return list(node.elts)
    if isinstance(node, ast.Dict):
        return list(node.values)
    return []


def _prefixes(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Call):
        return ["" for _ in node.args] + [f"{k.arg}=" for k in node.keywords]
    if isinstance(node, ast.Dict):
        return [f"{expr(k)}: " for k in node.keys]  # type: ignore[arg-type]
    return ["" for _ in _children(node)]


def _split(head: str, node: ast.expr, tail: str, depth: int) -> list[str]:
    """Lines for ``head + node + tail`` at ``depth`` indents."""
    indent = _INDENT * depth
    one = f"{indent}{head}{expr(node)}{tail}"
    if isinstance(node, ast.IfExp) and len(one) > LINE_LENGTH:
        # In parentheses, as ruff formats it: on one line there, else one line
        # for each of the body, the test and the alternative.
        inner = _INDENT * (depth + 1)
        flat = f"{inner}{expr(node)}"
        if len(flat) <= LINE_LENGTH:
            return [f"{indent}{head}(", flat, f"{indent}){tail}"]
        return [
            f"{indent}{head}(",
            *_split("", node.body, "", depth + 1),
            f"{inner}if {expr(node.test)}",
            f"{inner}else {expr(node.orelse)}",
            f"{indent}){tail}",
        ]
    parts = _items(node)
    if len(one) <= LINE_LENGTH or parts is None or not parts[1]:
        return [one]
    opening, items, closing = parts
    inner = _INDENT * (depth + 1)
    joined = ", ".join(items)
    single_tuple = isinstance(node, ast.Tuple) and len(items) == 1
    if len(inner + joined) <= LINE_LENGTH and not single_tuple:
        return [
            f"{indent}{head}{opening}",
            f"{inner}{joined}",
            f"{indent}{closing}{tail}",
        ]
    lines = [f"{indent}{head}{opening}"]
    for prefix, child in zip(_prefixes(node), _children(node)):
        lines += _split(prefix, child, ",", depth + 1)
    lines.append(f"{indent}{closing}{tail}")
    return lines


def statement(head: str, node: ast.expr, depth: int, tail: str = "") -> list[str]:
    """``head + <node> + tail`` as formatted lines, e.g. head='self.conv = '."""
    return _split(head, node, tail, depth)
