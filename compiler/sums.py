"""Sums of symbolic sizes, written with like terms collected.

A block that joins five growth-rate outputs to its input has ``in_channels + 5 * g``
channels; built one ``cat`` at a time, the sum reads ``in_channels + g + g + g + g +
g``. ``simplify`` writes a sum as a linear combination of its terms with integer
coefficients plus a constant: the terms in the order they first appear, each once,
the constant last, terms that cancel dropped.

Only for integer sizes: the caller gives an expression whose value is an ``int``.
Then every ``+ - *`` in it adds or multiplies integers (a float anywhere would make
the result a float), so collecting terms changes no value. A term is anything else
(a name, ``a * b``, ``a // 2``, a call): it is kept as written, with the sums inside
its operands simplified for ``* // % **`` (whose integer result takes integer
operands), never reordered; a call or a conditional is kept whole. A literal times a
sum, ``2 * (a + b)``, is one term too: like terms of it are collected
(``2 * (a + b) + 3 * (a + b)`` is ``5 * (a + b)``), but it is never multiplied out.
An expression in which nothing combines is returned as written.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

__all__ = ["simplify"]

# Operators whose integer result has integer operands: their insides may be simplified.
_INSIDE = (ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow)


@dataclass
class _Linear:
    """sum(coefficient * term) + constant; ``terms`` keyed by the term's ast.dump."""

    terms: dict[str, tuple[int, ast.expr]] = field(default_factory=dict)
    constant: int | None = None  # None: no literal written
    combined: bool = False  # whether anything was collected: else keep it as written

    def add_term(self, node: ast.expr, scale: int) -> None:
        key = ast.dump(node)
        self.combined |= key in self.terms
        coefficient, first = self.terms.get(key, (0, node))
        self.terms[key] = (coefficient + scale, first)

    def add_constant(self, number: int) -> None:
        self.combined |= self.constant is not None or number == 0
        self.constant = (self.constant or 0) + number

    def merge(self, other: _Linear, factor: int) -> None:
        """Add ``factor * other``: a literal factor of a sum."""
        self.combined |= (
            other.combined
            or factor in (-1, 0, 1)
            or other.is_constant()  # 3 * 4
            or any(abs(c) != 1 for c, _ in other.terms.values())  # 3 * (2 * a)
        )
        for coefficient, node in other.terms.values():
            self.add_term(node, factor * coefficient)
        if other.constant is not None:
            self.add_constant(factor * other.constant)

    def pieces(self) -> int:
        nonzero = sum(1 for c, _ in self.terms.values() if c)
        return nonzero + (self.constant not in (None, 0))

    def is_constant(self) -> bool:
        return not any(c for c, _ in self.terms.values())


def simplify(node: ast.expr) -> ast.expr:
    """``node``, an integer-valued expression, with like terms of its sums collected
    (a new tree; ``node`` is not changed). Returned as written, but for the insides of
    its terms, when nothing in it combines."""
    node = _inside_terms(node)
    linear = _collect(node)
    if not linear.combined:  # nothing combines: keep the order as written
        return node
    return _build(linear)


def _integer(node: ast.expr) -> int | None:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
    ):
        return node.value
    return None


def _collect(node: ast.expr) -> _Linear:
    linear = _Linear()
    _add(node, 1, linear)
    return linear


def _add(node: ast.expr, scale: int, linear: _Linear) -> None:
    number = _integer(node)
    if number is not None:
        linear.add_constant(scale * number)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        _add(node.left, scale, linear)
        _add(node.right, -scale if isinstance(node.op, ast.Sub) else scale, linear)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _add(node.operand, -scale if isinstance(node.op, ast.USub) else scale, linear)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _collect(node.left), _collect(node.right)
        if left.is_constant() or right.is_constant():  # a literal factor
            factor, other, written = (
                (left, right, node.right)
                if left.is_constant()
                else (right, left, node.left)
            )
            number = scale * (factor.constant or 0)
            linear.combined |= factor.combined or number == 0
            if other.pieces() <= 1:  # c * (k * a): one term, its coefficient c * k
                linear.merge(other, number)
            else:  # c * (a + b): a sum is one term, never multiplied out
                linear.add_term(written, number)
        else:
            linear.add_term(node, scale)
    else:
        linear.add_term(node, scale)


def _inside_terms(node: ast.expr) -> ast.expr:
    """A copy of ``node`` as written, the sums inside its terms simplified."""
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return ast.BinOp(
                _inside_terms(node.left), node.op, _inside_terms(node.right)
            )
        if isinstance(node.op, _INSIDE):
            return ast.BinOp(simplify(node.left), node.op, simplify(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return ast.UnaryOp(node.op, _inside_terms(node.operand))
    return node


def _build(linear: _Linear) -> ast.expr:
    constant = linear.constant or 0
    out: ast.expr | None = None
    for coefficient, term in linear.terms.values():
        if coefficient == 0:
            continue
        size = abs(coefficient)
        piece = term if size == 1 else ast.BinOp(ast.Constant(size), ast.Mult(), term)
        if out is None:
            if coefficient > 0:
                out = piece
            elif size == 1:
                out = ast.UnaryOp(ast.USub(), term)
            else:
                negative = ast.UnaryOp(ast.USub(), ast.Constant(size))
                out = ast.BinOp(negative, ast.Mult(), term)
        else:
            op: ast.operator = ast.Add() if coefficient > 0 else ast.Sub()
            out = ast.BinOp(out, op, piece)
    if out is None:
        return ast.Constant(constant)
    if constant:
        op = ast.Add() if constant > 0 else ast.Sub()
        out = ast.BinOp(out, op, ast.Constant(abs(constant)))
    return out
