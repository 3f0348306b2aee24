"""Pass: graph templates -> walked graphs (every shape and constructor argument known).

Takes ``ctx.model_template``, ``ctx.block_templates``, ``ctx.params`` and the
model's declared inputs; gives ``ctx.result`` (the model's walk), ``ctx.uses``
(each block's walks, one per use, for assemble) and ``ctx.model_params`` (the
params the model's class takes). The walk evaluates every argument (expressions
may read shapes of earlier nodes), expands repeats, instantiates blocks with
symbolic sizes, infers constructor arguments from the shapes flowing in
(``in_channels``, ``in_features``, ...) and finds each node's output shape: by the
op's closed-form rule, else by running the op on the meta device. Its parts are in
``passes/walk/``.

The model's graph is walked with its params symbolic, as a block's are, so that
its class computes its layers' sizes from them: ``UNet(classes=5)``. A param the
class cannot take stays the literal it was compiled for: one that a repeat count
reads whose copies are written out one by one (or a block param built so), one
that is not a number, string or bool, one named as a name ``__init__`` reads, one
an init rule reads (or any count, when init or freeze rules name copies), and all
of them when some size could not be written in their terms (the class would
otherwise build the compiled sizes whatever it was given).
"""

from __future__ import annotations

import ast
import keyword
import re
from typing import Any

from ..codegen_hoist import RESERVED_NAMES
from ..expressions import ExpressionError, Scope, Val, const, resolve_value
from ..ir import CompileContext, CtorParam, GraphResult, GraphTemplate, ModuleDef
from ..values import Value
from .walk.graph import model_inputs, walk_graph
from .walk.state import Walk

__all__ = ["model_param_values", "run"]

_ANNOTATIONS = {bool: "bool", int: "int", float: "float", str: "str"}


def model_param_values(
    raw: dict[str, Any], params: dict[str, Any], fixed: set[str]
) -> tuple[dict[str, Val], list[str]]:
    """The model's params as Vals, and the names of those the class may take: a
    param written as a literal is its own name (unless ``fixed``), one computed
    from others (``"${base * 2}"``) is their expression."""
    scope = Scope({})
    vals: dict[str, Val] = {}
    free: list[str] = []
    for name, value in params.items():
        val = const(value)
        if (
            name not in fixed
            and type(value) in _ANNOTATIONS
            and isinstance(raw.get(name), str)
            and "${" in raw[name]
        ):
            try:
                computed = resolve_value(raw[name], scope)
            except ExpressionError:
                computed = val
            if computed.sym is not None and computed.value == value:
                val = Val(value, computed.sym)
        elif name not in fixed and type(value) in _ANNOTATIONS:
            val = Val(value, ast.Name(name, ast.Load()))
            free.append(name)
        vals[name] = val
        scope.values[name] = val
    return vals, free


def _used(result: GraphResult) -> set[str]:
    trees: list[ast.AST] = [value for _, value in result.attributes]
    for module in result.modules:
        trees.append(module.ctor)
        trees += [ctor for _, ctor in module.patches]
    return {n.id for t in trees for n in ast.walk(t) if isinstance(n, ast.Name)}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _strings(item)]
    return []


def _names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _counted(modules: list[ModuleDef]) -> set[str]:
    """The names a class's repeat counts read (``range(depth)``), through the
    params of the blocks it builds."""
    found: set[str] = set()
    for module in modules:
        for node in ast.walk(module.ctor):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "range"
            ):
                found |= _names(node)
        inner = _counted(module.children)
        if module.block is None:
            found |= inner
        elif isinstance(module.ctor, ast.Call):
            for kw in module.ctor.keywords:
                if kw.arg in inner:
                    found |= _names(kw.value)
    return found


def _walk_model(
    ctx: CompileContext, template: GraphTemplate, inputs: list[Value]
) -> tuple[Walk, GraphResult, list[CtorParam]]:
    assert ctx.spec is not None
    raw = dict(ctx.spec.params)
    raw.update(ctx.overrides or {})
    # The values of init rules are the literals compiled for: params they read
    # stay literals too.
    written = [
        t for t in _strings([r.model_dump() for r in ctx.spec.init]) if "${" in t
    ]
    # Names __init__ reads besides its params (``self``, ``nn``, ``range``, the
    # file's classes and imports) are never one: such a param stays a literal.
    taken = RESERVED_NAMES | {template.name, *ctx.block_templates}
    taken |= {name.split(".")[0] for name in ctx.allow_imports}
    fixed = {
        name
        for name in ctx.params
        if name in taken
        or not name.isidentifier()
        or keyword.iskeyword(name)
        or name.startswith("_")
        or any(re.search(rf"\b{re.escape(name)}\b", text) for text in written)
    }
    while True:
        vals, free = model_param_values(raw, ctx.params, fixed)
        if not free:
            break
        walk = Walk(ctx.document, ctx.block_templates, walk_graph)
        result = walk_graph(walk, template, vals, list(inputs), True)
        if result.hoisted:  # a size its params cannot express: all stay literal
            free = []
            break
        more = result.fixed & set(free)
        if ctx.spec.init or ctx.spec.freeze:
            # Init and freeze rules name the copies built for the count compiled
            # for (``self.body[2]``): a count read from the params stays fixed.
            more |= _counted(result.modules) & set(free)
        if not more:
            break
        fixed |= more
    used = _used(result) if free else set()
    if not used & set(free):  # the class takes none: built from literals, as written
        walk = Walk(ctx.document, ctx.block_templates, walk_graph)
        literal = {k: const(v) for k, v in ctx.params.items()}
        result = walk_graph(walk, template, literal, list(inputs), False)
        return walk, result, []
    params = [
        CtorParam(
            name,
            _ANNOTATIONS[type(ctx.params[name])],
            ast.Constant(ctx.params[name]),
        )
        for name in free
        if name in used
    ]
    return walk, result, params


def run(ctx: CompileContext) -> None:
    assert ctx.spec is not None and ctx.model_template is not None
    inputs = model_inputs(ctx.spec.inputs)
    walk, ctx.result, ctx.model_params = _walk_model(ctx, ctx.model_template, inputs)
    ctx.uses = walk.uses
