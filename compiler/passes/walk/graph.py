"""The graph walk: a graph template, its params and input values -> a GraphResult.

Takes a template (the model's, or a block's with ``symbolic`` sizes: a block's
input sizes and params, the model's params), the values of its params and its
inputs; walks its nodes in order, each node's inputs looked
up among the values so far (references with tuple indices: ``lstm.0``), and gives
what its class holds and computes: modules, calls, output value, and for a block
the names of its input sizes (``placeholders``) and of hoisted values.
"""

from __future__ import annotations

import ast
from typing import Any

import torch

from ....spec.errors import suggest
from ....spec.model import dim_names, example_shape
from ...expressions import ExpressionError, Scope, Val, const, runtime_size
from ...ir import GraphResult, GraphTemplate, NodeTemplate, Outputs, Ref
from ...names import Namespace
from ...op_table import MAX_ELEMENTS
from ...values import BATCH, TensorValue, TupleValue, Value
from . import conditions
from .blocks import placeholder_names
from .elaborate import (
    function_node,
    module_node,
    repeat_count,
    tensor_node,
    use_node,
)
from .state import GraphState, Walk, elements, node_error

__all__ = ["model_inputs", "walk_graph"]


def walk_graph(
    walk: Walk,
    template: GraphTemplate,
    params: dict[str, Val],
    inputs: list[Value],
    symbolic: bool,
) -> GraphResult:
    """The graph walked: every node elaborated, every shape inferred."""
    state = GraphState(template, symbolic)
    state.names = Namespace(set(params) | set(template.inputs))
    placeholders: dict[str, tuple[int, int]] = {}
    model = template.kind == "model"
    if symbolic and not model:
        for (i, k), name in placeholder_names(template.inputs, inputs).items():
            name = state.names.fresh(name)
            placeholders[name] = (i, k)
            value = inputs[i]
            assert isinstance(value, TensorValue)
            sym = list(value.sym)
            sym[k] = ast.Name(name, ast.Load())
            inputs[i] = TensorValue(
                value.shape, value.dtype, tuple(sym), value.batch_dim
            )
    for node in template.nodes:
        state.names.reserve(node.name)
    for name, value in zip(template.inputs, inputs):
        if model:
            _check_input(walk, name, value)
        state.env[name] = value
    state.scope = Scope(
        params,
        lambda ref: _shape_of(state, ref),
        lambda: list(state.env),
        runtime=True,
    )
    previous: Value | None = inputs[0] if len(inputs) == 1 else None
    for node in template.nodes:
        if node.tensor is not None:  # held by the module: not the chain's value
            state.env[node.name] = tensor_node(walk, state, node)
            continue
        previous = _node(walk, state, node, previous)
        state.env[node.name] = previous
    return GraphResult(
        template=template,
        modules=state.modules,
        calls=state.calls,
        output_value=_outputs(walk, state, template.outputs),
        input_values=inputs,
        hoisted=state.hoisted,
        attributes=state.attributes,
        placeholders=placeholders,
        param_values={k: v.value for k, v in params.items()},
        size=state.size,
        fixed=state.fixed,
        outputs=_aliased_outputs(state, template.outputs),
    )


def _check_input(walk: Walk, name: str, value: Value) -> None:
    """A declared model input within MAX_ELEMENTS elements per sample."""
    if isinstance(value, TensorValue) and elements(value) > MAX_ELEMENTS:
        path: tuple = ("inputs", name, "shape")
        if path not in walk.doc.marks:
            path = ("inputs", name)
        raise walk.doc.error(
            path,
            f"input {name!r} {value.render()} has {elements(value)} elements per "
            "sample, over the limit of 2**48",
        )


def _shape_of(state: GraphState, ref: str) -> list[Val | None]:
    """``ref.shape`` in an expression: the sizes of a node's or input's output."""
    if ref not in state.env:
        raise ExpressionError(
            f"{ref!r} is not a node or input defined before this point"
            + suggest(ref, list(state.env))
        )
    value = state.env[ref]
    if not isinstance(value, TensorValue):
        raise ExpressionError(f"{ref!r} is a tuple, not a tensor; it has no .shape")
    dims = value.dim_vals()
    for k in range(value.rank):
        named = k < len(value.dynamic) and value.dynamic[k] is not None
        if k == value.batch_dim or named:
            dims[k] = runtime_size(ref, k, value.shape[k])
    return dims


def _outputs(
    walk: Walk, state: GraphState, outputs: Outputs
) -> Value | dict[str, Value]:
    values = [_lookup(walk, state, ref) for ref in outputs.refs]
    if outputs.kind == "single":
        return values[0]
    if outputs.kind == "tuple":
        return TupleValue(tuple(values))
    return dict(zip(outputs.keys, values))


def _lookup(walk: Walk, state: GraphState, ref: Ref) -> Value:
    value = state.env.get(ref.name)
    for depth, k in enumerate(ref.index):
        if not isinstance(value, TupleValue):
            shown = ".".join([ref.name, *map(str, ref.index[:depth])])
            raise walk.doc.error(
                ref.path, f"{shown!r} is a single tensor, so {ref} is not defined"
            )
        if not -len(value.items) <= k < len(value.items):
            shown = ".".join([ref.name, *map(str, ref.index[:depth])])
            n = len(value.items)
            raise walk.doc.error(
                ref.path,
                f"{ref} is out of range: {shown!r} returns {n} values "
                f"({shown}.0 to {shown}.{n - 1})",
            )
        value = value.items[k]
    if value is None:
        raise walk.doc.error(
            ref.path, f"{ref} is None (the op returns no tensor there)"
        )
    return value


def _node(
    walk: Walk, state: GraphState, node: NodeTemplate, previous: Value | None
) -> Value:
    if node.inputs is None:
        if previous is None:
            raise node_error(walk.doc, node, "has no input: give it one with in:")
        if isinstance(previous, TupleValue):
            prev = state.calls[-1].node if state.calls else "previous"
            raise node_error(
                walk.doc,
                node,
                f"the previous node returns a tuple of {len(previous.items)}; "
                f"choose an element with in: {prev}.0",
            )
        refs: list[Ref] | dict[str, Ref] = (
            [state.previous_ref]
            if state.previous_ref is not None
            else [Ref(state.calls[-1].node)]
            if state.calls
            else []
        )
        values: list[Value] | dict[str, Value] = [previous]
    else:
        refs = node.inputs
        if isinstance(refs, dict):
            values = {k: _lookup(walk, state, r) for k, r in refs.items()}
            refs = {k: _aliased(state, r) for k, r in refs.items()}
        else:
            values = [_lookup(walk, state, r) for r in refs]
            refs = [_aliased(state, r) for r in refs]
    state.previous_ref = None
    if node.use is not None:
        if node.use in state.aliases:
            raise node_error(
                walk.doc,
                node,
                f"shares {node.use!r}, which is absent (its when is false)",
            )
        return use_node(walk, state, node, refs, values)
    assert node.op is not None
    cond = None
    if node.when is not None:
        cond = conditions.condition(walk, state, node)
        if conditions.known(state, cond):
            if not cond.value:  # left out: later nodes take its first input
                ref, value = conditions.first_input(refs, values)
                state.aliases[node.name] = ref
                state.previous_ref = ref
                return value
            cond = None
        elif not cond.value:
            return conditions.absent_in_class(walk, state, node, refs, values, cond)
    modules, calls = len(state.modules), len(state.calls)
    n = repeat_count(walk, state, node)
    if node.op.kind == "function":
        value = function_node(walk, state, node, refs, values, n)
    else:
        value = module_node(walk, state, node, refs, values, n)
    if cond is not None:
        conditions.mark_conditional(state, node, cond, modules, calls)
    return value


def _aliased(state: GraphState, ref: Ref) -> Ref:
    """A reference to a node left out by its ``when``: the input it passes through."""
    target = state.aliases.get(ref.name)
    if target is None:
        return ref
    return Ref(target.name, (*target.index, *ref.index), ref.path)


def _aliased_outputs(state: GraphState, outputs: Outputs) -> Outputs | None:
    if not state.aliases:
        return None
    refs = [_aliased(state, r) for r in outputs.refs]
    return Outputs(outputs.kind, refs, outputs.keys, outputs.path)


def model_inputs(spec_inputs: dict[str, Any]) -> list[Value]:
    """The model's input values: the declared shapes behind the batch dimension."""
    values: list[Value] = []
    for decl in spec_inputs.values():
        shape, dtype = (
            (decl, "float32") if isinstance(decl, list) else (decl.shape, decl.dtype)
        )
        sizes = example_shape(shape)
        full = (BATCH, *sizes)
        sym = (None, *(const(n).sym for n in sizes))
        named = tuple(dim_names(shape))
        dynamic = (None, *named) if any(named) else ()
        values.append(TensorValue(full, getattr(torch, dtype), sym, 0, dynamic))
    return values
