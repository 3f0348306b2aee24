"""Constructor code: bound arguments -> the AST that builds a module in ``__init__``.

Takes a node's bound arguments (``Val``s: a value and its symbolic form); gives
the expressions the generated class writes for them: a literal, the class's own
parameter or size expression, or, for a value its parameters cannot express, a new
constructor parameter (``hoisted``) or an attribute set in ``__init__`` and read
in ``forward``. Also the ``ModuleDef`` of a built torch module.
"""

from __future__ import annotations

import ast
from typing import Any

from ...expressions import Val, is_const, literal_ast
from ...ir import ModuleDef, NodeTemplate
from ...meta import module_facts
from ...names import local_name
from ...op_table import record_of
from ...ops import OpInfo, arguments_of
from .state import GraphState, Walk

__all__ = ["code", "ctor_ast", "forward_code", "module_def"]


def code(state: GraphState, node: NodeTemplate, arg: str, val: Val) -> ast.expr:
    """The expression for a constructor argument in the class being generated."""
    if not state.symbolic or is_const(val.sym):
        return literal_ast(val.value)
    if val.sym is not None:
        return val.sym
    name = state.names.fresh(f"{local_name(node.name)}_{arg}")
    state.hoisted.append((name, Val(val.value, None)))
    return ast.Name(name, ast.Load())


def forward_code(state: GraphState, node: NodeTemplate, arg: str, val: Val) -> ast.expr:
    """The expression for a function argument used in forward."""
    if not state.symbolic or is_const(val.sym):
        return literal_ast(val.value)
    attr = state.names.fresh(f"{local_name(node.name)}_{arg}")
    state.attributes.append((attr, code(state, node, arg, val)))
    return ast.Attribute(ast.Name("self", ast.Load()), attr, ast.Load())


def ctor_ast(
    state: GraphState, node: NodeTemplate, op: OpInfo, bound: dict[str, Val]
) -> ast.Call:
    """``nn.Conv2d(3, 16, kernel_size=3)``: the op's positional names (its record's)
    by position while they lead the signature, every other argument by keyword."""
    arguments = arguments_of(op.target)
    order = arguments.names if arguments is not None else ()
    positional = record_of(op).positional
    args: list[ast.expr] = []
    keywords: list[ast.keyword] = []
    leading = True
    for i, (name, val) in enumerate(bound.items()):
        expr = code(state, node, name, val)
        if leading and i < len(order) and order[i] == name and name in positional:
            args.append(expr)
        else:
            leading = False
            keywords.append(ast.keyword(name, expr))
    return ast.Call(ast.Name(op.code, ast.Load()), args, keywords)


def module_def(
    walk: Walk, node: NodeTemplate, op: OpInfo, ctor: ast.expr, module: Any
) -> ModuleDef:
    """The ModuleDef of a torch module built on the meta device for ``node``."""
    facts = module_facts(module)
    return ModuleDef(
        name=node.name,
        op=op,
        ctor=ctor,
        line=walk.line_of(node.path),
        value_class=facts.class_name,
        param_names=facts.param_names,
        param_shapes=facts.param_shapes,
        nested=facts.nested,
        num_params=facts.num_params,
        kinds=facts.kinds,
    )
