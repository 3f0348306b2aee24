"""Block instances: a node whose op is a block -> a walk of the block's graph, and
the constructor call of its class.

Takes the node's input values and bound params; walks the block's graph (once
per distinct params and input shapes: ``Walk.cache``) with *symbolic* sizes, so
that the block's class computes its layers' sizes from its own constructor
parameters, and gives the instance's ModuleDef, its output in the parent's terms,
and what the parent passed. Each use is recorded in ``Walk.uses`` for assemble.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import replace
from typing import Any

from ....spec.errors import SpecError, suggest
from ...expressions import Val, const, literal_ast
from ...ir import BlockUse, GraphResult, GraphTemplate, ModuleDef, NodeTemplate
from ...sums import simplify
from ...values import TensorValue, TupleValue, Value
from .bind import bind_block_params
from .ctor import code
from .shapes import literal_inputs, literal_sizes
from .state import GraphState, Walk, grow, node_error

__all__ = [
    "block_inputs",
    "block_instance",
    "placeholder_names",
    "run_block",
    "shared_block_shape",
]


def placeholder_names(
    inputs: list[str], values: list[Value]
) -> dict[tuple[int, int], str]:
    """Names for a block's input sizes (``in_channels``, ``x_features``), by (input
    index, dim): the parameters its class takes for them."""
    names: dict[tuple[int, int], str] = {}
    for i, (name, value) in enumerate(zip(inputs, values)):
        if not isinstance(value, TensorValue):
            continue
        prefix = "in" if len(inputs) == 1 else name
        rank = value.rank
        spatial = {4: ("height", "width"), 5: ("depth", "height", "width")}.get(
            rank, ()
        )
        for k in range(rank):
            if k == value.batch_dim:
                continue
            if k == rank - 1 and rank <= 3:
                word = "features"
            elif k == 1 and rank >= 4:
                word = "channels"
            elif spatial and k >= 2:
                word = spatial[k - 2]
            else:
                word = f"dim{k}"
            names[(i, k)] = f"{prefix}_{word}"
    return names


def _names_in(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _substitute(
    sym: ast.expr | None, mapping: dict[str, ast.expr | None]
) -> ast.expr | None:
    """Rewrite a child's symbolic size in the parent's terms; None if it cannot be."""
    if sym is None:
        return None
    missing = False

    class _Swap(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            nonlocal missing
            if node.id == "float":
                return node
            replacement = mapping.get(node.id)
            if replacement is None:
                missing = True
                return node
            return replacement

    new = _Swap().visit(copy.deepcopy(sym))
    return None if missing else new


def _simplified(sym: ast.expr | None) -> ast.expr | None:
    return None if sym is None else simplify(sym)


def _translate(value: Any, mapping: dict[str, ast.expr | None]) -> Any:
    if value is None:
        return None
    if isinstance(value, TensorValue):
        # A size is an integer: its sum in the parent's terms is simplified.
        sym = tuple(_simplified(_substitute(s, mapping)) for s in value.sym)
        return TensorValue(value.shape, value.dtype, sym, value.batch_dim)
    if isinstance(value, TupleValue):
        return TupleValue(tuple(_translate(v, mapping) for v in value.items))
    return {k: _translate(v, mapping) for k, v in value.items()}


def block_inputs(
    walk: Walk,
    node: NodeTemplate,
    block: GraphTemplate,
    values: list[Value] | dict[str, Value],
) -> list[Value]:
    """The node's input values in the order of the block's inputs, checked."""
    if isinstance(values, dict):
        unknown = [k for k in values if k not in block.inputs]
        if unknown:
            raise walk.doc.error(
                (*node.path, "in", unknown[0]),
                f"{node.label}: block {block.name} has no input {unknown[0]!r}"
                + suggest(unknown[0], block.inputs)
                + f"; its inputs: {', '.join(block.inputs)}",
                key=True,
            )
        missing = [k for k in block.inputs if k not in values]
        if missing:
            raise node_error(
                walk.doc, node, f"block {block.name} needs input {missing[0]!r}", "in"
            )
        ordered = [values[k] for k in block.inputs]
    else:
        ordered = list(values)
    if len(ordered) != len(block.inputs):
        raise node_error(
            walk.doc,
            node,
            f"block {block.name} takes {len(block.inputs)} input(s) "
            f"({', '.join(block.inputs)}), received {len(ordered)}",
            "in",
        )
    return ordered


def run_block(
    walk: Walk,
    block: GraphTemplate,
    params: dict[str, Val],
    inputs: list[Value],
    node: NodeTemplate,
) -> GraphResult:
    """The block's graph walked with symbolic sizes (once per params and shapes)."""
    key = (
        block.name,
        tuple((k, repr(v.value)) for k, v in params.items()),
        tuple(
            (v.shape, v.dtype, v.batch_dim) if isinstance(v, TensorValue) else repr(v)
            for v in inputs
        ),
    )
    cached = walk.cache.get(key)
    if cached is not None:
        return cached
    try:
        result = _walk_block(walk, block, params, inputs)
    except SpecError as exc:
        # The mistake is inside the block; say which use of it led there.
        line = walk.line_of(node.path)
        note = f" (in block {block.name}, as used by {node.label} at line {line})"
        raise SpecError(
            diagnostics=[replace(d, message=d.message + note) for d in exc.diagnostics],
            source=exc.source,
        ) from None
    walk.cache[key] = result
    return result


def _walk_block(
    walk: Walk, block: GraphTemplate, params: dict[str, Val], inputs: list[Value]
) -> GraphResult:
    """The walk of a block; walked again with some params as the literals they
    are, when a repeat count reads them but its copies are written out one by one:
    then the class is built for those values and takes no parameter for them."""
    uses = {name: len(found) for name, found in walk.uses.items()}
    expanded = walk.expanded
    result = walk.run_graph(walk, block, params, _fresh(inputs), True)
    fixed = result.fixed & set(block.params)
    if not fixed:
        result.fixed = set()
        return result
    walk.expanded = expanded  # the first walk is dropped: its uses and node count
    for name in list(walk.uses):
        if name in uses:
            del walk.uses[name][uses[name] :]
        else:
            del walk.uses[name]
    literal = {
        name: const(v.value) if name in fixed else v for name, v in params.items()
    }
    result = walk.run_graph(walk, block, literal, _fresh(inputs), True)
    result.fixed = fixed
    return result


def _fresh(inputs: list[Value]) -> list[Value]:
    return [
        TensorValue.make(v.shape, v.dtype, None, v.batch_dim)
        if isinstance(v, TensorValue)
        else v
        for v in inputs
    ]


def block_instance(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    values: list[Value] | dict[str, Value],
    extra: dict | None,
) -> tuple[ModuleDef, Value, dict[str, Val]]:
    """An instance of the node's block: its ModuleDef, output value and what the
    parent passes (given params, used input sizes, hoisted values)."""
    assert node.op is not None
    block = walk.blocks[node.op.name]
    given = bind_block_params(walk, state, node, block, extra)
    inputs = block_inputs(walk, node, block, values)
    child_params: dict[str, Val] = {}
    for name, decl in block.params.items():
        value = given[name].value if name in given else decl.default
        child_params[name] = Val(value, ast.Name(name, ast.Load()))
    walked_before = walk.expanded
    result = run_block(walk, block, child_params, inputs, node)
    grow(walk, state, result.size, node, walked=walk.expanded != walked_before)
    used = set()
    for mdef in result.modules:
        used |= _names_in(mdef.ctor)
        if mdef.condition is not None:
            used |= _names_in(mdef.condition)
    for _, expr in result.attributes:
        used |= _names_in(expr)
    sizes: list[ast.keyword] = []
    keywords: list[ast.keyword] = []
    mapping: dict[str, ast.expr | None] = {}
    bound: dict[str, Val] = {}
    for pname, (i, k) in result.placeholders.items():
        value = inputs[i]
        assert isinstance(value, TensorValue)
        dim = Val(value.shape[k], value.sym[k])
        mapping[pname] = dim.sym if state.symbolic else literal_ast(dim.value)
        if pname in used:
            sizes.append(ast.keyword(pname, code(state, node, pname, dim)))
            bound[pname] = dim
    for name, decl in block.params.items():
        if name in result.fixed:  # the class is built for its value
            val = given.get(name, Val(decl.default, literal_ast(decl.default)))
            if val.sym is not None:
                state.fixed |= _names_in(val.sym)
            mapping[name] = literal_ast(val.value)
            bound[name] = val
        elif name in given:
            val = given[name]
            keywords.append(ast.keyword(name, code(state, node, name, val)))
            mapping[name] = val.sym if state.symbolic else literal_ast(val.value)
            bound[name] = val
        else:
            mapping[name] = literal_ast(decl.default)
    # Given literals only (a use in the model's class): what the block could not
    # write in its params' terms is a literal here.
    literal = literal_inputs(inputs, list(given.values()))
    for hname, hval in result.hoisted:
        if literal:
            hval = const(hval.value)
        keywords.append(ast.keyword(hname, code(state, node, hname, hval)))
        mapping[hname] = None
        bound[hname] = hval
    ctor = ast.Call(ast.Name(block.name, ast.Load()), [], sizes + keywords)
    output = _translate(result.output_value, mapping)
    if literal:
        output = literal_sizes(output)
    mdef = ModuleDef(
        name=node.name,
        op=node.op,
        ctor=ctor,
        line=walk.line_of(node.path),
        value_class=block.name,
        children=result.modules,
        block=block.name,
        num_params=sum(m.num_params for m in result.modules),
    )
    walk.uses.setdefault(block.name, []).append(BlockUse(result, node.path))
    return mdef, output, bound


def shared_block_shape(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    block: GraphTemplate,
    bound: dict[str, Val],
    values: list[Value] | dict[str, Value],
) -> Value:
    """The output of a block instance called again (``use:``) on other inputs: its
    sizes must be the ones the instance was built for."""
    inputs = block_inputs(walk, node, block, values)
    params = {
        name: Val(bound[name].value if name in bound else decl.default, ast.Name(name))
        for name, decl in block.params.items()
    }
    result = run_block(walk, block, params, inputs, node)
    for pname, (i, k) in result.placeholders.items():
        value = inputs[i]
        if (
            pname in bound
            and isinstance(value, TensorValue)
            and bound[pname].value != value.shape[k]
        ):
            raise node_error(
                walk.doc,
                node,
                f"shares {node.use!r}, which was built for {pname}="
                f"{bound[pname].value}, but its input {value.render()} has "
                f"{value.shape[k]} in dim {k}",
            )
    mapping: dict[str, ast.expr | None] = {
        k: (v.sym if state.symbolic else literal_ast(v.value)) for k, v in bound.items()
    }
    return _translate(result.output_value, mapping)
