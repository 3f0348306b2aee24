"""``${...}`` expressions: parsed with Python's ``ast``, evaluated by a small interpreter.

Nothing is ever passed to ``eval``. The grammar is: literals, names in scope,
``+ - * / // % **``, comparisons, ``and or not``, ``a if c else b``, the functions
``min max abs int round len``, list literals and indexing, and ``ref.shape[k]``.

Every value is computed twice over: its concrete value, and, where it can be
written so, a Python expression of it in terms of the enclosing class's
constructor parameters (its *symbolic* form). The symbolic form is how a block's
generated class computes its layers' sizes from its own parameters.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..spec.errors import suggest

__all__ = [
    "Expression",
    "ExpressionError",
    "Scope",
    "Val",
    "const",
    "is_const",
    "literal_ast",
    "parse_expression",
    "resolve_value",
]

_MAX_POWER = 256
#: Largest value an expression may build: items of its lists (each use of a shared
#: sublist counted) plus characters of its strings.
_MAX_SEQUENCE = 100_000
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
class Val:
    """A value, and its symbolic form (None where it cannot be written in the class's terms)."""

    value: Any
    sym: ast.expr | None


def literal_ast(value: Any) -> ast.expr:
    """The AST of a literal (numbers, strings, bools, None, lists, tuples, dicts)."""
    if isinstance(value, (list, tuple)):
        node: ast.expr = (ast.List if isinstance(value, list) else ast.Tuple)(
            elts=[literal_ast(v) for v in value], ctx=ast.Load()
        )
        return node
    if isinstance(value, dict):
        return ast.Dict(
            keys=[literal_ast(k) for k in value],
            values=[literal_ast(v) for v in value.values()],
        )
    if type(value).__name__ == "dtype" and type(value).__module__ == "torch":
        # torch.int64: the canonical name of a torch dtype, never text from a spec.
        name = str(value).removeprefix("torch.")
        return ast.Attribute(ast.Name("torch", ast.Load()), name, ast.Load())
    if isinstance(value, float) and not math.isfinite(value):
        name = "inf" if value > 0 else "-inf"
        if math.isnan(value):
            name = "nan"
        return ast.Call(
            func=ast.Name("float", ast.Load()), args=[ast.Constant(name)], keywords=[]
        )
    return ast.Constant(value)


def const(value: Any) -> Val:
    return Val(value, literal_ast(value))


def is_const(sym: ast.expr | None) -> bool:
    """True when the symbolic form names nothing (a literal)."""
    if sym is None:
        return False
    return not any(
        isinstance(n, ast.Name) and n.id not in ("float", "torch")
        for n in ast.walk(sym)
    )


class Scope:
    """What names mean inside an expression.

    ``values`` maps params (and the repeat index ``i``) to Vals; ``shape_of``
    answers ``ref.shape`` for node and input names (a tuple of Vals per dim, the
    batch dimension first), or raises ExpressionError.
    """

    def __init__(
        self,
        values: dict[str, Val],
        shape_of: Callable[[str], list[Val | None]] | None = None,
        refs: Callable[[], list[str]] | None = None,
    ) -> None:
        self.values = values
        self.shape_of = shape_of
        self.refs = refs or (lambda: [])

    def child(self, extra: dict[str, Val]) -> Scope:
        return Scope({**self.values, **extra}, self.shape_of, self.refs)

    def names(self) -> list[str]:
        return sorted(set(self.values) | set(self.refs()))


@dataclass(frozen=True)
class Expression:
    """A parsed ``${...}`` expression."""

    text: str
    tree: ast.expr


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
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
    *_BINOPS,
    *_CMPOPS,
    *_UNARY,
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
            f"invalid expression {_short(source)}: {exc.msg}"
        ) from None
    except (RecursionError, MemoryError, ValueError):
        # The parser's own limits: nesting too deep, a number too long.
        raise ExpressionError(
            f"expression {_short(source)} is nested too deeply or holds a number "
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
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                what = ast.unparse(node.func)
                raise ExpressionError(
                    f"calling {what!r} is not allowed in {source!r}; the functions are "
                    + ", ".join(_FUNCTIONS)
                )
            if node.keywords:
                raise ExpressionError(
                    f"keyword arguments are not allowed in {source!r}"
                )
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, complex)):
            raise ExpressionError(f"unsupported literal in {source!r}")
        if isinstance(node, ast.Constant):
            try:
                _check_size(node.value)
            except ExpressionError as exc:
                raise ExpressionError(f"a literal in {_short(source)}: {exc}") from None
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ExpressionError(f"name {node.id!r} is not allowed")
    return Expression(source, tree.body)


def _short(source: str) -> str:
    return repr(source if len(source) <= 60 else source[:57] + "...")


def _check_depth(tree: ast.AST, source: str) -> None:
    """Refuse a tree nested deeper than _MAX_DEPTH (walked without recursion), so
    that evaluating and printing it cannot exhaust the stack."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ExpressionError(
                f"expression {_short(source)} is nested more than {_MAX_DEPTH} levels "
                "deep"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _size(value: Any, limit: int = _MAX_SEQUENCE) -> int:
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


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)):
        size = _size(value)
        if size > _MAX_SEQUENCE:
            raise ExpressionError(
                f"expression result is too long (more than {_MAX_SEQUENCE} items and "
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


def _check_format(template: str, text: str) -> None:
    """Refuse a ``%`` format whose fields would be wider than _MAX_WIDTH, or would
    make the result longer than _MAX_SEQUENCE, before formatting."""
    total = len(template)
    for match in _PERCENT.finditer(template):
        width, precision = match.group(1), match.group(2)
        if "*" in (width, precision):
            raise ExpressionError(f"'*' widths are not allowed in formats ({text!r})")
        for number in (width, precision):
            if number and int(number) > _MAX_WIDTH:
                raise ExpressionError(
                    f"format width {number} in {_short(text)} is too large (at most "
                    f"{_MAX_WIDTH})"
                )
            total += int(number or 0)
    if total > _MAX_SEQUENCE:
        raise ExpressionError(
            f"the format in {_short(text)} would be longer than {_MAX_SEQUENCE} "
            "characters"
        )


def _predicted_size(op: type, left: Any, right: Any) -> int:
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


class _Evaluator:
    def __init__(self, scope: Scope, text: str) -> None:
        self.scope = scope
        self.text = text

    def run(self, node: ast.expr) -> Val:
        method = getattr(self, f"eval_{type(node).__name__}")
        return method(node)

    def eval_Constant(self, node: ast.Constant) -> Val:
        return const(node.value)

    def eval_Name(self, node: ast.Name) -> Val:
        if node.id in self.scope.values:
            return self.scope.values[node.id]
        if node.id in (
            "True",
            "False",
            "None",
        ):  # pragma: no cover - parsed as Constant
            return const({"True": True, "False": False, "None": None}[node.id])
        names = self.scope.names()
        raise ExpressionError(
            f"unknown name {node.id!r} in {self.text!r}{suggest(node.id, names)}; "
            f"names in scope: {', '.join(names) or 'none'}"
        )

    def eval_List(self, node: ast.List) -> Val:
        items = [self.run(e) for e in node.elts]
        return _combine(
            [v.value for v in items], items, lambda syms: ast.List(syms, ast.Load())
        )

    eval_Tuple = eval_List

    def eval_BinOp(self, node: ast.BinOp) -> Val:
        left, right = self.run(node.left), self.run(node.right)
        op = type(node.op)
        if (
            op is ast.Pow
            and isinstance(right.value, (int, float))
            and abs(right.value) > _MAX_POWER
        ):
            raise ExpressionError(f"exponent too large in {self.text!r}")
        if _predicted_size(op, left.value, right.value) > _MAX_SEQUENCE:
            raise ExpressionError(
                f"repetition too large in {_short(self.text)}: the result would have "
                f"more than {_MAX_SEQUENCE} items and characters (each use of a "
                "shared list counted)"
            )
        if op is ast.Mod and isinstance(left.value, str):
            _check_format(left.value, self.text)
        try:
            value = _check_size(_BINOPS[op](left.value, right.value))
        except ExpressionError:
            raise
        except Exception as exc:
            raise ExpressionError(
                f"cannot compute {ast.unparse(node)!r}: {type(exc).__name__}: {exc}"
            ) from None
        return _combine(value, [left, right], lambda s: ast.BinOp(s[0], node.op, s[1]))

    def eval_UnaryOp(self, node: ast.UnaryOp) -> Val:
        operand = self.run(node.operand)
        try:
            value = _UNARY[type(node.op)](operand.value)
        except Exception as exc:
            raise ExpressionError(
                f"cannot compute {ast.unparse(node)!r}: {exc}"
            ) from None
        return _combine(value, [operand], lambda s: ast.UnaryOp(node.op, s[0]))

    def eval_BoolOp(self, node: ast.BoolOp) -> Val:
        is_and = isinstance(node.op, ast.And)
        vals: list[Val] = []
        result: Val | None = None
        for item in node.values:
            val = self.run(item)
            vals.append(val)
            if result is None and (not val.value if is_and else val.value):
                result = val
        chosen = result if result is not None else vals[-1]
        # Symbolic form: the whole expression when every operand has one.
        if all(v.sym is not None for v in vals) and not all(
            is_const(v.sym) for v in vals
        ):
            syms = [v.sym for v in vals if v.sym is not None]
            return Val(chosen.value, ast.BoolOp(node.op, syms))
        if all(is_const(v.sym) for v in vals):
            return const(chosen.value)
        return Val(chosen.value, None)

    def eval_Compare(self, node: ast.Compare) -> Val:
        operands = [self.run(node.left)] + [self.run(c) for c in node.comparators]
        result = True
        try:
            for op, (a, b) in zip(node.ops, itertools.pairwise(operands)):
                if not _CMPOPS[type(op)](a.value, b.value):
                    result = False
                    break
        except Exception as exc:
            raise ExpressionError(
                f"cannot compare in {ast.unparse(node)!r}: {exc}"
            ) from None
        return _combine(
            result,
            operands,
            lambda s: ast.Compare(s[0], list(node.ops), list(s[1:])),
        )

    def eval_IfExp(self, node: ast.IfExp) -> Val:
        test = self.run(node.test)
        taken = self.run(node.body if test.value else node.orelse)
        if is_const(test.sym):
            return taken
        try:
            other = self.run(node.orelse if test.value else node.body)
        except ExpressionError:
            return Val(taken.value, None)
        body, orelse = (taken, other) if test.value else (other, taken)
        if test.sym is None or body.sym is None or orelse.sym is None:
            return Val(taken.value, None)
        return Val(taken.value, ast.IfExp(test.sym, body.sym, orelse.sym))

    def eval_Call(self, node: ast.Call) -> Val:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        args = [self.run(a) for a in node.args]
        try:
            value = _FUNCTIONS[name](*[a.value for a in args])
        except Exception as exc:
            raise ExpressionError(
                f"cannot compute {ast.unparse(node)!r}: {exc}"
            ) from None
        return _combine(
            value, args, lambda s: ast.Call(ast.Name(name, ast.Load()), list(s), [])
        )

    def eval_Attribute(self, node: ast.Attribute) -> Val:
        raise ExpressionError(
            f"{ast.unparse(node)!r} must be indexed: write {ast.unparse(node)}[k]"
        )

    def eval_Subscript(self, node: ast.Subscript) -> Val:
        index = self.run(node.slice)
        if isinstance(node.value, ast.Attribute):
            ref = node.value.value
            assert isinstance(ref, ast.Name)
            return self.shape_dim(ref.id, index, node)
        container = self.run(node.value)
        if not isinstance(container.value, (list, tuple, str)):
            raise ExpressionError(
                f"cannot index {ast.unparse(node.value)!r}: it is "
                f"{type(container.value).__name__}, not a list"
            )
        if not isinstance(index.value, int) or isinstance(index.value, bool):
            raise ExpressionError(f"index in {ast.unparse(node)!r} must be an integer")
        try:
            value = container.value[index.value]
        except IndexError:
            raise ExpressionError(
                f"index {index.value} is out of range in {ast.unparse(node)!r} "
                f"(length {len(container.value)})"
            ) from None
        return _combine(
            value, [container, index], lambda s: ast.Subscript(s[0], s[1], ast.Load())
        )

    def shape_dim(self, ref: str, index: Val, node: ast.expr) -> Val:
        if self.scope.shape_of is None:
            raise ExpressionError(f"{ast.unparse(node)!r}: shapes are not known here")
        dims = self.scope.shape_of(ref)
        k = index.value
        if not isinstance(k, int) or isinstance(k, bool):
            raise ExpressionError(
                f"shape index in {ast.unparse(node)!r} must be an integer"
            )
        if not -len(dims) <= k < len(dims):
            raise ExpressionError(
                f"{ast.unparse(node)!r}: {ref!r} has {len(dims)} dimensions "
                f"(batch included), so k must be in 1..{len(dims) - 1}"
            )
        dim = dims[k]
        if dim is None:
            raise ExpressionError(
                f"{ast.unparse(node)!r} is the batch dimension, which is not a number "
                "at compile time"
            )
        return dim


def _combine(
    value: Any, operands: list[Val], build: Callable[[list[ast.expr]], ast.expr]
) -> Val:
    """The result's symbolic form: a literal when the operands are literals, the
    operation over their forms when all have one, else None."""
    if all(is_const(v.sym) for v in operands):
        return const(value)
    if any(v.sym is None for v in operands):
        return Val(value, None)
    return Val(value, build([v.sym for v in operands]))  # type: ignore[misc]


def evaluate(expr: Expression, scope: Scope) -> Val:
    """Evaluate a parsed expression in a scope. Raises ExpressionError."""
    try:
        return _Evaluator(scope, expr.text).run(expr.tree)
    except RecursionError:
        raise ExpressionError(
            f"expression {expr.text!r} is nested too deeply"
        ) from None


def _split_template(text: str) -> list[str | Expression]:
    """'a${x}b' -> ['a', Expression(x), 'b']; '$${' stands for a literal '${'."""
    parts: list[str | Expression] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
        elif text.startswith("${", i):
            end = _matching_brace(text, i + 2)
            if end < 0:
                raise ExpressionError(f"unclosed ${{ in {text!r}")
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(parse_expression(text[i + 2 : end]))
            i = end + 1
        else:
            buf.append(text[i])
            i += 1
    if buf:
        parts.append("".join(buf))
    return parts


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    quote = ""
    for j in range(start, len(text)):
        ch = text[j]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "}":
            if depth == 0:
                return j
            depth -= 1
    return -1


def resolve_value(raw: Any, scope: Scope) -> Val:
    """A spec value with its ``${...}`` parts evaluated, recursively through lists and mappings."""
    if isinstance(raw, str):
        if "${" not in raw:
            return const(raw)
        parts = _split_template(raw)
        if len(parts) == 1 and isinstance(parts[0], Expression):
            return evaluate(parts[0], scope)
        vals = [
            evaluate(p, scope) if isinstance(p, Expression) else const(p) for p in parts
        ]
        pieces = []
        length = 0
        for v in vals:
            piece = v.value if isinstance(v.value, str) else str(v.value)
            length += len(piece)
            if length > _MAX_SEQUENCE:
                raise ExpressionError(
                    f"the text {raw[:40]!r}... is longer than {_MAX_SEQUENCE} "
                    "characters once its expressions are filled in"
                )
            pieces.append(piece)
        text = "".join(pieces)
        return const(text) if all(is_const(v.sym) for v in vals) else Val(text, None)
    if isinstance(raw, list):
        items = [resolve_value(v, scope) for v in raw]
        return _combine(
            [v.value for v in items], items, lambda s: ast.List(s, ast.Load())
        )
    if isinstance(raw, dict):
        entries = {k: resolve_value(v, scope) for k, v in raw.items()}
        keys: list[ast.expr | None] = [ast.Constant(k) for k in entries]
        return _combine(
            {k: v.value for k, v in entries.items()},
            list(entries.values()),
            lambda s: ast.Dict(keys, list(s)),
        )
    return const(raw)
