"""Constructor code: bound arguments -> the AST that builds a module in ``__init__``.

Takes a node's bound arguments (``Val``s: a value and its symbolic form); gives
the expressions the generated class writes for them: a literal, the class's own
parameter or size expression, or, for a value its parameters cannot express, a new
constructor parameter (``hoisted``) or an attribute set in ``__init__`` and read
in ``forward``. Also the ``ModuleDef`` of a built torch module.
"""

from __future__ import annotations

import ast
import copy
from typing import Any

import torch

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


def forward_code(
    state: GraphState, node: NodeTemplate, arg: str, val: Val, hole: bool = False
) -> ast.expr:
    """The expression for a function argument used in forward: a literal, an
    attribute set in ``__init__`` (a block's param: ``self.p``), or, for a value
    known only at run time, its expression (``x.shape[0]``, ``self.training``)
    with the compile-time values in it written the same way."""
    if val.runtime is not None:
        holes = {
            name: forward_code(state, node, arg, v, hole=True) for name, v in val.holes
        }

        class Fill(ast.NodeTransformer):
            def visit_Name(self, n: ast.Name) -> ast.expr:
                return holes.get(n.id, n)

        return Fill().visit(copy.deepcopy(val.runtime))
    if not state.symbolic or is_const(val.sym):
        return literal_ast(val.value)
    value = code(state, node, arg, val)
    if hole:  # inside a run-time expression: one attribute per value
        for attr, held in state.attributes:
            if ast.dump(held) == ast.dump(value):
                return ast.Attribute(ast.Name("self", ast.Load()), attr, ast.Load())
    if hole and isinstance(value, ast.Name) and _free_attribute(state, value.id):
        attr = value.id  # a param, held under its own name: ``self.p = p``
    else:
        attr = state.names.fresh(f"{local_name(node.name)}_{arg}")
    state.attributes.append((attr, value))
    return ast.Attribute(ast.Name("self", ast.Load()), attr, ast.Load())


def _free_attribute(state: GraphState, name: str) -> bool:
    """Whether ``self.<name>`` is free for a value forward reads: no node's module
    or other attribute holds it, and ``nn.Module`` has no such member."""
    return (
        all(n.name != name for n in state.template.nodes)
        and all(attr != name for attr, _ in state.attributes)
        and not hasattr(torch.nn.Module, name)
    )


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
