"""The grammar of ``${...}`` expressions and the limits on what they may build.

``parse_expression`` checks an expression's text against the grammar (see
``expressions.py``) before anything is evaluated; the ``check_*`` functions keep
what evaluation builds within ``MAX_SEQUENCE`` items and ``MAX_INT_BITS`` bits.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BINOPS",
    "CMPOPS",
    "FUNCTIONS",
    "MAX_POWER",
    "MAX_SEQUENCE",
    "UNARY",
    "Expression",
    "ExpressionError",
    "check_format",
    "check_size",
    "parse_expression",
    "predicted_size",
    "short",
]

MAX_POWER = 256
#: Largest value an expression may build: items of its lists (each use of a shared
#: sublist counted) plus characters of its strings.
MAX_SEQUENCE = 100_000
#: Largest integer an expression may write or compute, in bits.
_MAX_INT_BITS = 1024
#: Longest text of one ``${...}`` expression, and its deepest nesting of operations.
_MAX_TEXT = 10_000
_MAX_DEPTH = 100
#: Widest field (and precision) a ``%`` format may ask for.
_MAX_WIDTH = 1_000
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)


class ExpressionError(Exception):
    """A mistake in an expression; the compiler adds the position."""


@dataclass(frozen=True)
class Expression:
    """A parsed ``${...}`` expression."""

    text: str
    tree: ast.expr


BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "round": round,
    "len": len,
}
_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Subscript,
    ast.Attribute,
    ast.List,
    ast.Tuple,
    *BINOPS,
    *CMPOPS,
    *UNARY,
    ast.And,
    ast.Or,
)


def parse_expression(text: str) -> Expression:
    """Parse and check an expression's grammar. Raises ExpressionError."""
    source = text.strip()
    if not source:
        raise ExpressionError("empty expression ${}")
    if len(source) > _MAX_TEXT:
        raise ExpressionError(
            f"expression of {len(source)} characters; an expression has at most "
            f"{_MAX_TEXT}"
        )
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(
            f"invalid expression {short(source)}: {exc.msg}"
        ) from None
    except (RecursionError, MemoryError, ValueError):
        # The parser's own limits: nesting too deep, a number too long.
        raise ExpressionError(
            f"expression {short(source)} is nested too deeply or holds a number "
            f"too long to read (at most {_MAX_DEPTH} levels and "
            f"{_MAX_INT_BITS}-bit integers)"
        ) from None
    _check_depth(tree, source)
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"{type(node).__name__} is not allowed in expressions ({source!r}); "
                "expressions have literals, names, arithmetic, comparisons, "
                "and/or/not, 'a if c else b', min/max/abs/int/round/len and ref.shape[k]"
            )
        if isinstance(node, ast.Attribute) and (
            node.attr != "shape" or not isinstance(node.value, ast.Name)
        ):
            raise ExpressionError(
                f"attribute .{node.attr} is not allowed in {source!r}; the only attribute "
                "is .shape of a node or input name (ref.shape[k])"
            )
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = ast.unparse(node.func)
                raise ExpressionError(
                    f"calling {what!r} is not allowed in {source!r}; the functions are "
                    + ", ".join(FUNCTIONS)
                )
            if node.keywords:
                raise ExpressionError(
                    f"keyword arguments are not allowed in {source!r}"
                )
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, complex)):
            raise ExpressionError(f"unsupported literal in {source!r}")
        if isinstance(node, ast.Constant):
            try:
                check_size(node.value)
            except ExpressionError as exc:
                raise ExpressionError(f"a literal in {short(source)}: {exc}") from None
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ExpressionError(f"name {node.id!r} is not allowed")
    return Expression(source, tree.body)


def short(source: str) -> str:
    return repr(source if len(source) <= 60 else source[:57] + "...")


def _check_depth(tree: ast.AST, source: str) -> None:
    """Refuse a tree nested deeper than _MAX_DEPTH (walked without recursion), so
    that evaluating and printing it cannot exhaust the stack."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ExpressionError(
                f"expression {short(source)} is nested more than {_MAX_DEPTH} levels "
                "deep"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _size(value: Any, limit: int = MAX_SEQUENCE) -> int:
    """The size of a value as the limit counts it: 1 per item of a list, every use
    of a shared sublist counted, plus the characters of strings. Stops counting past
    ``limit``; linear in the distinct lists, however much they are shared."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, done = stack.pop()
        if isinstance(item, str):
            sizes[id(item)] = len(item)
        elif isinstance(item, (list, tuple)):
            key = id(item)
            if key in sizes:
                continue
            if not done:
                stack.append((item, True))
                stack.extend((v, False) for v in item if id(v) not in sizes)
                continue
            total = len(item)
            for v in item:
                total += sizes.get(id(v), 0)
                if total > limit:
                    break
            sizes[key] = min(total, limit + 1)
        elif isinstance(item, dict):
            sizes[id(item)] = len(item)
    return sizes.get(id(value), 0)


def check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)):
        size = _size(value)
        if size > MAX_SEQUENCE:
            raise ExpressionError(
                f"expression result is too long (more than {MAX_SEQUENCE} items and "
                "characters, each use of a shared list counted)"
            )
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value.bit_length() > _MAX_INT_BITS
    ):
        raise ExpressionError(
            f"expression result is too large (an integer of more than "
            f"{_MAX_INT_BITS} bits)"
        )
    return value


def check_format(template: str, text: str) -> None:
    """Refuse a ``%`` format whose fields would be wider than _MAX_WIDTH, or would
    make the result longer than MAX_SEQUENCE, before formatting."""
    total = len(template)
    for match in _PERCENT.finditer(template):
        width, precision = match.group(1), match.group(2)
        if "*" in (width, precision):
            raise ExpressionError(f"'*' widths are not allowed in formats ({text!r})")
        for number in (width, precision):
            if number and int(number) > _MAX_WIDTH:
                raise ExpressionError(
                    f"format width {number} in {short(text)} is too large (at most "
                    f"{_MAX_WIDTH})"
                )
            total += int(number or 0)
    if total > MAX_SEQUENCE:
        raise ExpressionError(
            f"the format in {short(text)} would be longer than {MAX_SEQUENCE} "
            "characters"
        )


def predicted_size(op: type, left: Any, right: Any) -> int:
    """How large the result of ``left op right`` would be, for operations whose
    result can be much larger than their operands (repetition)."""
    if op is ast.Mult:
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(times, int)
                and times > 0
            ):
                return _size(seq) * times if seq else 0
    return 0
