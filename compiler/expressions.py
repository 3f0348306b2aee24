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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..spec.errors import suggest
from .expression_syntax import (
    BINOPS,
    CMPOPS,
    FUNCTIONS,
    MAX_POWER,
    MAX_SEQUENCE,
    UNARY,
    Expression,
    ExpressionError,
    check_format,
    check_size,
    parse_expression,
    predicted_size,
    short,
)
from .sums import simplify

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
    "runtime_size",
    "training_val",
]


@dataclass(frozen=True)
class Val:
    """A value, and its symbolic form (None where it cannot be written in the class's terms).

    A value known only at run time (the batch size, a named input size, the
    module's mode) also has ``runtime``: the expression ``forward`` computes it
    with (``x.shape[0]``, ``self.training``), where ``value`` is its example for
    shape inference. The values of compile-time operands inside it are the
    placeholders ``holes`` (name -> Val), written into forward where it is made.
    """

    value: Any
    sym: ast.expr | None
    runtime: ast.expr | None = None
    holes: tuple[tuple[str, Val], ...] = ()


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


_HOLES = itertools.count()

#: The module's mode in a graph's expressions: ``self.training`` in forward; its
#: example value for shape inference is evaluation mode.
TRAINING = "training"


def training_val() -> Val:
    attr = ast.Attribute(ast.Name("self", ast.Load()), TRAINING, ast.Load())
    return Val(False, None, attr)


def runtime_size(ref: str, k: int, example: int) -> Val:
    """``ref.shape[k]``, read in forward: a size known only at run time."""
    shape = ast.Attribute(ast.Name(ref, ast.Load()), "shape", ast.Load())
    return Val(example, None, ast.Subscript(shape, ast.Constant(k), ast.Load()))


class Scope:
    """What names mean inside an expression.

    ``values`` maps params (and the repeat index ``i``) to Vals; ``shape_of``
    answers ``ref.shape`` for node and input names (a tuple of Vals per dim, the
    batch dimension first), or raises ExpressionError. In a graph's scope
    (``runtime``), ``training`` is the module's mode.
    """

    def __init__(
        self,
        values: dict[str, Val],
        shape_of: Callable[[str], list[Val | None]] | None = None,
        refs: Callable[[], list[str]] | None = None,
        runtime: bool = False,
    ) -> None:
        self.values = values
        self.shape_of = shape_of
        self.refs = refs or (lambda: [])
        self.runtime = runtime

    def child(self, extra: dict[str, Val]) -> Scope:
        return Scope({**self.values, **extra}, self.shape_of, self.refs, self.runtime)

    def names(self) -> list[str]:
        return sorted(set(self.values) | set(self.refs()))


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
        if node.id == TRAINING and self.scope.runtime:
            return training_val()
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
            and abs(right.value) > MAX_POWER
        ):
            raise ExpressionError(f"exponent too large in {self.text!r}")
        if predicted_size(op, left.value, right.value) > MAX_SEQUENCE:
            raise ExpressionError(
                f"repetition too large in {short(self.text)}: the result would have "
                f"more than {MAX_SEQUENCE} items and characters (each use of a "
                "shared list counted)"
            )
        if op is ast.Mod and isinstance(left.value, str):
            check_format(left.value, self.text)
        try:
            value = check_size(BINOPS[op](left.value, right.value))
        except ExpressionError:
            raise
        except Exception as exc:
            raise ExpressionError(
                f"cannot compute {ast.unparse(node)!r}: {type(exc).__name__}: {exc}"
            ) from None
        result = _combine(
            value, [left, right], lambda s: ast.BinOp(s[0], node.op, s[1])
        )
        return _integer_sum(result, [left, right])

    def eval_UnaryOp(self, node: ast.UnaryOp) -> Val:
        operand = self.run(node.operand)
        try:
            value = UNARY[type(node.op)](operand.value)
        except Exception as exc:
            raise ExpressionError(
                f"cannot compute {ast.unparse(node)!r}: {exc}"
            ) from None
        result = _combine(value, [operand], lambda s: ast.UnaryOp(node.op, s[0]))
        return _integer_sum(result, [operand])

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
        if any(v.runtime is not None for v in vals):
            return _at_run_time(chosen.value, vals, lambda s: ast.BoolOp(node.op, s))
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
                if not CMPOPS[type(op)](a.value, b.value):
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
        if test.runtime is None and is_const(test.sym):
            return taken
        try:
            other = self.run(node.orelse if test.value else node.body)
        except ExpressionError:
            if test.runtime is not None:
                raise
            return Val(taken.value, None)
        body, orelse = (taken, other) if test.value else (other, taken)
        if any(v.runtime is not None for v in (test, body, orelse)):
            return _at_run_time(
                taken.value,
                [test, body, orelse],
                lambda s: ast.IfExp(s[0], s[1], s[2]),
            )
        if test.sym is None or body.sym is None or orelse.sym is None:
            return Val(taken.value, None)
        return Val(taken.value, ast.IfExp(test.sym, body.sym, orelse.sym))

    def eval_Call(self, node: ast.Call) -> Val:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        args = [self.run(a) for a in node.args]
        try:
            value = FUNCTIONS[name](*[a.value for a in args])
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
        if dim is not None and dim.runtime is not None:
            return dim
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
    if any(v.runtime is not None for v in operands):
        return _at_run_time(value, operands, build)
    if all(is_const(v.sym) for v in operands):
        return const(value)
    if any(v.sym is None for v in operands):
        return Val(value, None)
    return Val(value, build([v.sym for v in operands]))  # type: ignore[misc]


def _at_run_time(
    value: Any, operands: list[Val], build: Callable[[list[ast.expr]], ast.expr]
) -> Val:
    """A value computed in forward from operands of which one at least is known only
    at run time: the operation over their forward forms (a literal, or a hole for a
    compile-time value that is not one)."""
    forms: list[ast.expr] = []
    holes: list[tuple[str, Val]] = []
    for v in operands:
        if v.runtime is not None:
            forms.append(v.runtime)
            holes += v.holes
        elif is_const(v.sym):
            forms.append(literal_ast(v.value))
        else:
            hole = f"__hole{next(_HOLES)}__"
            forms.append(ast.Name(hole, ast.Load()))
            holes.append((hole, v))
    return Val(value, None, build(forms), tuple(holes))


def _integer_sum(result: Val, operands: list[Val]) -> Val:
    """``result`` with the like terms of its symbolic form collected, where it and its
    operands are integers (``g + g`` is ``2 * g``); else as it is."""
    if (
        result.sym is None
        or is_const(result.sym)
        or not all(type(v.value) is int for v in [result, *operands])
    ):
        return result
    return Val(result.value, simplify(result.sym))


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
            if length > MAX_SEQUENCE:
                raise ExpressionError(
                    f"the text {raw[:40]!r}... is longer than {MAX_SEQUENCE} "
                    "characters once its expressions are filled in"
                )
            pieces.append(piece)
        text = "".join(pieces)
        if any(v.runtime is not None for v in vals):
            raise ExpressionError(
                f"{raw!r} writes a value known only at run time into text"
            )
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
