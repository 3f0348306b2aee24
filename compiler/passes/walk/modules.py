"""Torch modules: a node whose op is a torch.nn layer (or a factory's) -> the module,
built on the meta device, with its ``patch``es applied.

Takes the node, its input values and the graph's state; gives the ModuleDef (its
constructor AST, parameters and submodules), the output value and the bound
arguments (which a ``use:`` of the node builds it again with).
"""

from __future__ import annotations

import ast

import torch

from ...expressions import Val
from ...ir import ModuleDef, NodeTemplate
from ...ops import OpInfo
from ...values import TensorValue, Value
from .bind import bind_module_args
from .ctor import ctor_ast, module_def
from .shapes import meta_module, module_shape, submodule_input
from .state import GraphState, Walk, node_error

__all__ = ["torch_module"]

Values = list[Value] | dict[str, Value]


def torch_module(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    values: Values,
    extra: dict | None,
    call: dict[str, Val] | None = None,
) -> tuple[ModuleDef, Value, dict[str, Val]]:
    """A torch module (or a factory's): bound, built on meta, patched, its output
    (called with the keyword arguments ``call``)."""
    assert node.op is not None
    op = node.op
    listed = list(values.values()) if isinstance(values, dict) else values
    first = listed[0] if listed and isinstance(listed[0], TensorValue) else None
    bound = bind_module_args(walk, state, node, op, first, extra)
    module = meta_module(walk, node, op, bound, fresh=bool(node.patch))
    if not isinstance(module, torch.nn.Module):
        raise node_error(
            walk.doc,
            node,
            f"{op.name} returned {type(module).__name__}, not an nn.Module",
        )
    patches = _patch(walk, state, node, module, values, extra) if node.patch else []
    value = module_shape(
        walk,
        node,
        op,
        module,
        bound,
        values,
        rules=not patches and not call,
        call={k: v.value for k, v in (call or {}).items()},
    )
    mdef = module_def(walk, node, op, ctor_ast(state, node, op, bound), module)
    mdef.patches = patches
    return mdef, value, bound


def _patch(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    module: torch.nn.Module,
    values: Values,
    extra: dict | None,
) -> list[tuple[str, ast.expr]]:
    """Replace submodules as the node's ``patch`` says, each built for the input
    it receives when the module runs."""
    assert node.patch is not None
    patches: list[tuple[str, ast.expr]] = []
    for child, patch in node.patch.items():
        op: OpInfo | None = patch.op
        assert op is not None
        received = submodule_input(walk, node, module, child, values, patch.path)
        bound = bind_module_args(walk, state, patch, op, received, extra)
        replacement = meta_module(walk, patch, op, bound, fresh=True)
        parent_name, _, attr = child.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, replacement)
        patches.append((child, ctor_ast(state, patch, op, bound)))
    return patches
