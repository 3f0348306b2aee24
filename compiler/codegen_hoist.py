"""Constructor expressions that repeat, computed once into a local of ``__init__``.

A block's layers often size themselves by the same expression of its parameters: the
U-Net's DoubleConv passes ``mid or out`` to three layers, its Up ``skip_channels +
x_channels`` to two. Written by hand, each is computed once::

    mid = mid or out
    in_channels = skip_channels + x_channels

Only arithmetic of the constructor's parameters is hoisted (operators, comparisons,
conditionals; never a call, which could build a module or have an effect), and only
from where it is always evaluated, so that computing it first changes no result.
"""

from __future__ import annotations

import ast
import builtins
import copy
import inspect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache

from torch import nn

from .names import Namespace

__all__ = ["RESERVED_NAMES", "Hoisted", "hoist"]

_ARITHMETIC = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp)
_OPERATORS = (ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context)
_ALLOWED = (*_ARITHMETIC, ast.Constant, *_OPERATORS)
# Names __init__ uses besides its parameters: these are never a local's name.
RESERVED_NAMES = frozenset({"self", "super", "nn", "torch", "F", "module"}) | frozenset(
    dir(builtins)
)


@dataclass
class Hoisted:
    """The constructor's expressions with their repeated parts replaced by locals."""

    exprs: list[ast.expr]
    locals: list[tuple[str, ast.expr]] = field(default_factory=list)  # in order
    # The replacements made, in order: (ast.dump of the expression, local name).
    steps: list[tuple[str, str]] = field(default_factory=list)

    def rewrite(self, node: ast.expr) -> ast.expr:
        """Another expression of the same parameters (a size in a shape comment),
        written with the locals: ``mid`` for ``mid or out``."""
        for key, name in self.steps:
            node = _Replace(key, name).expr(copy.deepcopy(node))
        return node


def hoist(
    exprs: list[ast.expr], params: Mapping[str, str], reserved: Iterable[str] = ()
) -> Hoisted:
    """``exprs`` (copied, not changed) with each arithmetic expression of ``params``
    (name -> annotation) that occurs more than once computed once, largest first;
    ``reserved`` names (the file's imports and classes) are never taken for a local."""
    if not params:  # nothing to share
        return Hoisted(list(exprs))
    result = Hoisted([copy.deepcopy(e) for e in exprs])
    bound = set(params)
    names = Namespace(bound | RESERVED_NAMES | set(reserved))
    while True:
        found = _most_repeated([*result.exprs, *(v for _, v in result.locals)], bound)
        if found is None:
            result.locals = _in_order_of_use(result)
            return result
        key, example, contexts = found
        name = _rebound(example, key, result, params) or _fresh(names, contexts)
        replace = _Replace(key, name)
        result.exprs = [replace.expr(e) for e in result.exprs]
        result.locals = [(n, replace.expr(v)) for n, v in result.locals]
        result.locals.append((name, copy.deepcopy(example)))
        result.steps.append((key, name))
        bound.add(name)


def _in_order_of_use(result: Hoisted) -> list[tuple[str, ast.expr]]:
    """The locals in the order the layers first need them, each after those its
    value names."""
    values = dict(result.locals)
    first = {
        name: next(
            (i for i, e in enumerate(result.exprs) if name in _names(e)),
            len(result.exprs),
        )
        for name in values
    }
    changed = True
    while changed:  # a local needed by another is needed where that one is
        changed = False
        for name, value in values.items():
            for used in _names(value) & values.keys() - {name}:
                if first[name] < first[used]:
                    first[used], changed = first[name], True
    ordered: list[str] = []

    def place(name: str) -> None:
        if name not in ordered:
            for used in sorted(_names(values[name]) & values.keys() - {name}):
                place(used)
            ordered.append(name)

    order = list(values)
    for name in sorted(values, key=lambda n: (first[n], order.index(n))):
        place(name)
    return [(name, values[name]) for name in ordered]


def _most_repeated(
    trees: list[ast.expr], bound: set[str]
) -> tuple[str, ast.expr, list[str | None]] | None:
    """The largest candidate that occurs at least twice (the first such, on a tie):
    its key, an occurrence, and the parameter name each occurrence is passed as."""
    seen: dict[str, tuple[ast.expr, list[str | None]]] = {}
    for tree in trees:
        for node, passed_as in _evaluated(tree, None):
            if _candidate(node, bound):
                key = ast.dump(node)
                seen.setdefault(key, (node, []))[1].append(passed_as)
    best: tuple[str, ast.expr, list[str | None]] | None = None
    best_size = 0
    for key, (node, contexts) in seen.items():
        size = sum(1 for _ in ast.walk(node))
        if len(contexts) > 1 and size > best_size:
            best, best_size = (key, node, contexts), size
    return best


def _evaluated(
    node: ast.expr, passed_as: str | None
) -> Iterator[tuple[ast.expr, str | None]]:
    """``node`` and its sub-expressions that are always evaluated with it, each with
    the name of the parameter it is passed as (a call's keyword or positional)."""
    yield node, passed_as
    if isinstance(node, ast.Call):
        positional = _positional_names(node.func)
        for i, arg in enumerate(node.args):
            yield from _evaluated(arg, positional[i] if i < len(positional) else None)
        for keyword in node.keywords:
            yield from _evaluated(keyword.value, keyword.arg)
    elif isinstance(node, ast.IfExp):
        yield from _evaluated(node.test, None)  # a branch may not be evaluated
    elif isinstance(node, ast.BoolOp):
        yield from _evaluated(node.values[0], None)  # later operands may not be
    elif isinstance(node, ast.Compare):  # nor those after a comparison that fails
        yield from _evaluated(node.left, None)
        yield from _evaluated(node.comparators[0], None)
    else:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                yield from _evaluated(child, None)


def _positional_names(func: ast.expr) -> tuple[str, ...]:
    """The positional parameter names of ``nn.<Module>``; none for anything else."""
    if not isinstance(func, ast.Name) or not func.id.startswith("nn."):
        return ()
    return _positional_of(func.id[3:])


@cache
def _positional_of(name: str) -> tuple[str, ...]:
    target = getattr(nn, name, None)
    if not isinstance(target, type):
        return ()
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


def _candidate(node: ast.expr, bound: set[str]) -> bool:
    """Arithmetic over constants and bound names, naming at least one of them."""
    if not isinstance(node, _ARITHMETIC):
        return False
    used = False
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            if child.id not in bound:
                return False
            used = True
        elif not isinstance(child, _ALLOWED):
            return False
    return used


def _rebound(
    example: ast.expr, key: str, result: Hoisted, params: Mapping[str, str]
) -> str | None:
    """``mid`` for ``mid or out`` when ``mid`` is used nowhere else: ``mid = mid or
    out`` is how a default is written. Only where the value keeps the parameter's
    type (``int | None`` or'd with ints), so that a type checker agrees."""
    if not (
        isinstance(example, ast.BoolOp)
        and isinstance(example.op, ast.Or)
        and isinstance(example.values[0], ast.Name)
        and example.values[0].id in params
    ):
        return None
    name = example.values[0].id
    base = params[name].removesuffix(" | None")
    if base == params[name] or not all(
        (isinstance(v, ast.Name) and params.get(v.id) == base)
        or (isinstance(v, ast.Constant) and type(v.value).__name__ == base)
        for v in example.values[1:]
    ):
        return None
    # Every use of the parameter must be inside this expression: count both.
    inside = uses = 0
    for tree in [*result.exprs, *(v for _, v in result.locals)]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == name:
                uses += 1
            elif isinstance(node, ast.BoolOp) and ast.dump(node) == key:
                inside += 1
    return name if uses == inside else None


def _fresh(names: Namespace, contexts: list[str | None]) -> str:
    """The first free parameter name an occurrence is passed as, else a new name."""
    for candidate in contexts:
        if candidate is not None and candidate not in names:
            names.reserve(candidate)
            return candidate
    first = next((c for c in contexts if c is not None), "size")
    return names.fresh(first)


def _names(node: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Replace(ast.NodeTransformer):
    """Every occurrence of the expression with ``key`` becomes the local ``name``."""

    def __init__(self, key: str, name: str) -> None:
        self.key = key
        self.name = name

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and ast.dump(node) == self.key:
            return ast.Name(self.name, ast.Load())
        return super().visit(node)

    def expr(self, node: ast.expr) -> ast.expr:
        done = self.visit(node)
        assert isinstance(done, ast.expr)
        return done
