"""Elaborating a node: one template node -> the modules and calls of its class.

Takes a node template with its input references and values; expands its repeat
(copies chained one after another: an ``nn.Sequential`` of modules, or a function
called again on its own output), resolves a ``use:`` node to the module it calls
again, builds a torch module (with its ``patch``es), a block instance or a seq node's
``nn.Sequential`` (its children chained, a repeated child's copies spliced), and gives
the node's output value. Each statement of forward is a ``Call`` of a ``CallKind``.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ....spec.errors import SpecError, describe_value
from ...expressions import Val, const, is_const
from ...hints import inputs_by_name
from ...ir import Call, CallKind, ModuleDef, NodeTemplate, Ref
from ...names import name_problem
from ...op_table import record_of
from ...ops import OpInfo
from ...values import TensorValue, Value
from .bind import check_function_limits, evaluate_node_args
from .blocks import block_instance, shared_block_shape
from .ctor import forward_code
from .modules import torch_module
from .shapes import function_shape, meta_module, module_shape
from .state import MAX_GRAPH_NODES, MAX_REPEAT, GraphState, Walk, count, evaluate, grow
from .state import node_error as error

__all__ = ["function_node", "module_node", "repeat_count", "use_node"]

Values = list[Value] | dict[str, Value]
Refs = list[Ref] | dict[str, Ref]


def _call(walk: Walk, node: NodeTemplate, kind: CallKind, **fields: Any) -> Call:
    line, file = walk.line_of(node.path), walk.file_of(node.path)
    return Call(
        node=fields.pop("name", node.name), line=line, file=file, kind=kind, **fields
    )


def _repeat_val(walk: Walk, state: GraphState, node: NodeTemplate) -> Val:
    path = (*node.path, "repeat")
    return evaluate(walk, state, node.repeat, path, what=f"{node.label}, repeat")


def repeat_count(walk: Walk, state: GraphState, node: NodeTemplate) -> int | None:
    """The node's repeat, evaluated and checked; None when it does not repeat."""
    if node.repeat is None:
        return None
    path = (*node.path, "repeat")
    val = _repeat_val(walk, state, node)
    if not isinstance(val.value, int) or isinstance(val.value, bool) or val.value < 1:
        raise walk.doc.error(
            path,
            f"{node.label}: repeat must be a positive integer, received "
            f"{describe_value(val.value)}",
        )
    if val.value > MAX_REPEAT:
        raise walk.doc.error(
            path, f"{node.label}: repeat {val.value} is over the limit of {MAX_REPEAT}"
        )
    return val.value


def function_node(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    refs: Refs,
    values: Values,
    n: int | None,
) -> Value:
    """A tensor function's calls (``n`` of them for a repeat) and its output."""
    assert node.op is not None
    op = node.op
    sequence = record_of(op).sequence
    if n is not None:  # a function's copies are statements, written out
        state.fixed |= _names(_param_count(walk, state, node) or ast.Constant(0))
    value: Value | None = None
    for k in range(n or 1):
        extra = {"i": const(k)} if n is not None else None
        args, kwargs = evaluate_node_args(walk, state, node, extra)
        if k > 0:
            assert value is not None
            values = [value]
            refs = [Ref(state.calls[-1].node)]
        check_function_limits(walk, node, values, args, kwargs)
        try:
            value = function_shape(walk, node, values, args, kwargs)
        except SpecError as exc:
            raise _reference_as_argument(walk, state, node, exc) or exc from None
        grow(walk, state, 1, node, walked=False)
        # The last copy carries the node's name: references to the node mean it.
        last = n is None or k == n - 1
        call = _call(
            walk,
            node,
            CallKind.FUNCTION,
            name=node.name if last else state.names.fresh(node.name),
            callee=op.code,
            inputs=refs,
            sequence=sequence,
            args=[forward_code(state, node, f"arg{j}", a) for j, a in enumerate(args)],
            kwargs=[
                (key, forward_code(state, node, key, v)) for key, v in kwargs.items()
            ],
            value=value,
            op=op.name,
        )
        state.calls.append(call)
        if n is not None and k < n - 1 and not isinstance(value, TensorValue):
            raise error(walk.doc, node, "repeats, so it must return one tensor")
    assert value is not None
    return value


def _reference_as_argument(
    walk: Walk, state: GraphState, node: NodeTemplate, exc: SpecError
) -> SpecError | None:
    """The error to report instead of torch's ("must be Tensor, not str") when a
    keyword argument names a node or input: tensors are passed with ``in:``."""
    assert node.op is not None
    for key, raw in node.kwargs.items():
        if (
            isinstance(raw, str)
            and raw.split(".")[0] in state.env
            and (f"'{key}'" in exc.message or "not str" in exc.message)
        ):
            kind = "an input" if raw in state.template.inputs else "a node"
            return walk.doc.error(
                (*node.path, key),
                f"{node.label}, {key}: {raw!r} is {kind}, but a keyword argument "
                "is a constant; pass the tensor as an input, by name: "
                + inputs_by_name(node.op, node.inputs, key, raw),
                key=True,
            )
    return None


def module_node(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    refs: Refs,
    values: Values,
    n: int | None,
) -> Value:
    """A module node (torch module, factory or block; ``n`` copies for a repeat):
    its ModuleDef, its call in forward, and its output."""
    assert node.op is not None
    if n is not None and n > 1:
        _check_repeat_inputs(walk, node, values)
    copies: list[ModuleDef] = []
    outputs: list[Value] = []
    value: Value | None = None
    bound: dict[str, Val] = {}
    for k in range(n or 1):
        extra = {"i": const(k)} if n is not None else None
        if k > 0:
            if not isinstance(value, TensorValue):
                raise error(walk.doc, node, "repeats, so it must return one tensor")
            values = [value]
        before = state.size
        mdef, value, bound = _module(walk, state, node, values, extra)
        copies.append(mdef)
        outputs.append(value)
        if k == 0 and n is not None:
            _check_copies(walk, node, n, state.size - before)
    assert value is not None
    kind = CallKind.BLOCK if node.op.kind == "block" else CallKind.MODULE
    if node.seq is not None:
        kind = CallKind.REPEAT
    if n is None:
        module = copies[0]
    else:
        kind = CallKind.REPEAT
        for k, copy in enumerate(copies):
            copy.name = str(k)
        module = ModuleDef(
            name=node.name,
            op=node.op,
            ctor=ast.Call(
                ast.Attribute(ast.Name("nn", ast.Load()), "Sequential", ast.Load()),
                _copies_code(walk, state, node, copies, outputs),
                [],
            ),
            line=copies[0].line,
            value_class="Sequential",
            children=copies,
            num_params=sum(c.num_params for c in copies),
        )
    state.modules.append(module)
    state.module_by_name[node.name] = (module, node, bound)
    state.calls.append(
        _call(
            walk,
            node,
            kind,
            callee=f"self.{node.name}",
            inputs=refs,
            sequence=False,
            args=[],
            kwargs=[],
            value=value,
            op=node.op.name,
        )
    )
    return value


def _module(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    values: Values,
    extra: dict | None,
) -> tuple[ModuleDef, Value, dict[str, Val]]:
    """One module of a node: a seq's nn.Sequential, a block instance or a torch module."""
    assert node.op is not None
    if node.seq is not None:
        mdef, value = _sequential(walk, state, node, values, extra)
        return mdef, value, {}
    if node.op.kind == "block":
        return block_instance(walk, state, node, values, extra)
    found = torch_module(walk, state, node, values, extra)
    grow(walk, state, 1, node, walked=False)
    return found


def _sequential(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    values: Values,
    extra: dict | None,
) -> tuple[ModuleDef, Value]:
    """A seq node's ``nn.Sequential``: its children chained in order, a repeated
    child's copies spliced in place; keyed by name (an ``OrderedDict``) when any
    child is named, the others by position."""
    assert node.seq is not None and node.op is not None
    if isinstance(values, dict) or len(values) != 1:
        raise error(walk.doc, node, "is an nn.Sequential: it takes one input")
    named = any(child.key is not None for child in node.seq)
    current: Value = values[0]
    children: list[ModuleDef] = []
    code: list[ast.expr] = []
    taken: dict[str, NodeTemplate] = {}
    for child in node.seq:
        n = repeat_count(walk, state, child)
        copies: list[ModuleDef] = []
        outputs: list[Value] = []
        for k in range(n or 1):
            if not isinstance(current, TensorValue):
                raise error(
                    walk.doc,
                    child,
                    "takes the previous child's output, a tuple: each child of a "
                    "seq but the last must return one tensor",
                )
            before = state.size
            inner = {**(extra or {}), "i": const(k)} if n is not None else extra
            mdef, current, _ = _module(walk, state, child, [current], inner)
            mdef.name = _key(walk, state, child, len(children), k, n, taken)
            copies.append(mdef)
            outputs.append(current)
            children.append(mdef)
            if k == 0 and n is not None:
                _check_copies(walk, child, n, state.size - before)
        if n is not None and not named:
            code += _copies_code(walk, state, child, copies, outputs)
        else:
            if n is not None and (count := _param_count(walk, state, child)):
                state.fixed |= _names(count)
            code += [c.ctor for c in copies]
    sequential = ast.Attribute(ast.Name("nn", ast.Load()), "Sequential", ast.Load())
    if named:
        items: list[ast.expr] = [
            ast.Tuple([ast.Constant(c.name), expr], ast.Load())
            for c, expr in zip(children, code)
        ]
        code = [
            ast.Call(
                ast.Name("OrderedDict", ast.Load()), [ast.List(items, ast.Load())], []
            )
        ]
    module = ModuleDef(
        name=node.name,
        op=node.op,
        ctor=ast.Call(sequential, code, []),
        line=walk.line_of(node.path),
        value_class="Sequential",
        children=children,
        num_params=sum(c.num_params for c in children),
        seq=True,
    )
    return module, current


def _key(
    walk: Walk,
    state: GraphState,
    child: NodeTemplate,
    position: int,
    k: int,
    n: int | None,
    taken: dict[str, NodeTemplate],
) -> str:
    """A seq child's key: its name (a repeated child's template, for copy ``k``),
    else its position; unique in the seq."""
    if child.key is None:
        key = str(position)
    elif n is None:
        key = child.key
    else:
        path = (*child.path, "name")
        val = evaluate(
            walk, state, child.key, path, {"i": const(k)}, what=f"{child.label}, name"
        )
        key = val.value if isinstance(val.value, str) else str(val.value)
        problem = name_problem(key)
        if problem:
            raise walk.doc.error(
                path,
                f"{child.label}: the name of copy {k}, {key!r}, {problem}; write a "
                "template that gives an identifier (denselayer${i + 1})",
            )
    if key in taken:
        other = taken[key]
        raise walk.doc.error(
            (*child.path, "name") if child.key is not None else child.path,
            f"{child.label}: the name {key!r} is taken in this seq, by "
            f"line {walk.line_of(other.path)}",
        )
    taken[key] = child
    return key


_USES_INDEX = re.compile(r"\$\{[^}]*\bi\b")


def _uses_index(raw: Any) -> bool:
    """Whether an argument as written may read the copy's index ``i`` (a
    conservative test of its text: a false yes only costs the general form)."""
    if isinstance(raw, str):
        return _USES_INDEX.search(raw) is not None
    if isinstance(raw, dict):
        return any(_uses_index(v) for v in raw.values())
    if isinstance(raw, (list, tuple)):
        return any(_uses_index(v) for v in raw)
    return False


def _same_value(a: Value, b: Value) -> bool:
    if isinstance(a, TensorValue) and isinstance(b, TensorValue):
        return (a.shape, a.dtype, a.batch_dim) == (b.shape, b.dtype, b.batch_dim) and [
            None if s is None else ast.dump(s) for s in a.sym
        ] == [None if s is None else ast.dump(s) for s in b.sym]
    return False


def _copies_code(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    copies: list[ModuleDef],
    outputs: list[Value],
) -> list[ast.expr]:
    """The arguments of a repeat's ``nn.Sequential``: each copy as built, or, in a
    block whose repeat count is written in its params, the copies made by a
    generator over ``range(count)``, so that the class builds as many as it is
    told. That takes copies that are all built alike: the first may differ (it
    takes the block's input), every later one must take what it gives (its
    output is its input) and read no index ``i``. Otherwise the copies are
    written out and the names the count reads go to ``state.fixed``: the block
    is walked again with those params as literals, and its class takes none of
    them (a signature never names a count the class ignores)."""
    written = [c.ctor for c in copies]
    count = _param_count(walk, state, node)
    if count is None:
        return written
    later = {ast.dump(c) for c in written[1:]}
    if (
        len(copies) < 2
        or _uses_index([node.args, node.kwargs, node.patch])
        or not _same_value(outputs[0], outputs[1])
        or len(later) != 1
        or any(n in _hoisted_names(state) for n in _names(written[1]))
    ):
        state.fixed |= _names(count)
        return written
    if ast.dump(written[0]) == ast.dump(written[1]):
        return [_generated(written[1], count)]
    rest = ast.BinOp(count, ast.Sub(), ast.Constant(1))
    return [written[0], _generated(written[1], rest)]


def _param_count(walk: Walk, state: GraphState, node: NodeTemplate) -> ast.expr | None:
    """The repeat count in the terms of the block's class, when it names any."""
    if not state.symbolic:
        return None
    count = _repeat_val(walk, state, node).sym
    return None if count is None or is_const(count) else count


def _hoisted_names(state: GraphState) -> set[str]:
    return {name for name, _ in state.hoisted} | {n for n, _ in state.attributes}


def _names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _generated(ctor: ast.expr, count: ast.expr) -> ast.expr:
    """``*(ctor for _ in range(count))``."""
    loop = ast.comprehension(
        target=ast.Name("_", ast.Store()),
        iter=ast.Call(ast.Name("range", ast.Load()), [count], []),
        ifs=[],
        is_async=0,
    )
    return ast.Starred(ast.GeneratorExp(ctor, [loop]), ast.Load())


def _check_repeat_inputs(walk: Walk, node: NodeTemplate, values: Values) -> None:
    """Each copy of a repeat after the first takes the previous copy's output as
    its one input: a node of several inputs cannot repeat."""
    assert node.op is not None
    if node.op.kind == "block":
        names = walk.blocks[node.op.name].inputs
        what = f"block {node.op.name} takes {count(len(names), 'input')}"
        what += f" ({', '.join(names)})"
    else:
        names = [str(k) for k in range(len(values))]
        what = f"it is given {count(len(names), 'input')}"
    if len(names) > 1:
        raise walk.doc.error(
            (*node.path, "repeat"),
            f"{node.label}: {what}, but a repeat chains its copies: each copy "
            "after the first takes the previous copy's output as its only input; "
            "repeat a node of one input, or write the copies as separate nodes",
            key=True,
        )


def _check_copies(walk: Walk, node: NodeTemplate, n: int, each: int) -> None:
    """Fail before making the copies of a repeat that cannot fit the node limit."""
    if walk.expanded + (n - 1) * each > MAX_GRAPH_NODES:
        raise walk.doc.error(
            (*node.path, "repeat"),
            f"{node.label}: {n} copies of {each} nodes each would take the model "
            f"to more than {MAX_GRAPH_NODES} nodes (blocks and repeats expanded), "
            "the limit",
        )


def use_node(
    walk: Walk, state: GraphState, node: NodeTemplate, refs: Refs, values: Values
) -> Value:
    """A ``use:`` node: an earlier node's module called again on these inputs."""
    assert node.use is not None
    module, original, bound = state.module_by_name[node.use]
    if module.seq:
        raise error(
            walk.doc,
            node,
            f"shares {node.use!r}, a seq node: a seq is not shared; make its "
            "children a block, and use the block's node",
        )
    if module.children and module.block is None:  # a repeat: run the chain again
        value: Value | None = None
        current = values
        for _ in module.children:
            value = _shared_shape(
                walk, state, node, original, module.op, bound, current
            )
            current = [value]
    else:
        value = _shared_shape(walk, state, node, original, module.op, bound, values)
    assert value is not None
    grow(walk, state, 1, node, walked=False)
    state.calls.append(
        _call(
            walk,
            node,
            CallKind.SHARED,
            callee=f"self.{node.use}",
            inputs=refs,
            sequence=False,
            args=[],
            kwargs=[],
            value=value,
            op=f"use {node.use}",
        )
    )
    return value


def _shared_shape(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    original: NodeTemplate,
    op: OpInfo,
    bound: dict[str, Val],
    values: Values,
) -> Value:
    if op.kind == "block":
        block = walk.blocks[op.name]
        return shared_block_shape(walk, state, node, block, bound, values)
    module = meta_module(walk, original, op, bound)
    context = f"shares {node.use!r}, built for other inputs: "
    return module_shape(walk, node, op, module, bound, values, context=context)
