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

import torch

from ....spec.errors import SpecError, describe_value, suggest
from ...expressions import Val, const, is_const, literal_ast
from ...hints import inputs_by_name
from ...ir import Call, CallKind, ModuleDef, NodeTemplate, Ref
from ...names import name_problem
from ...op_table import record_of
from ...ops import OpInfo
from ...values import TensorValue, Value
from .bind import check_compile_time, check_function_limits, evaluate_node_args
from .blocks import block_instance, shared_block_shape
from .ctor import code, forward_code
from .modules import torch_module
from .shapes import function_shape, meta_module, module_shape
from .state import (
    MAX_GRAPH_NODES,
    MAX_REPEAT,
    GraphState,
    Walk,
    bounded,
    evaluate,
    grow,
)
from .state import node_error as error

__all__ = ["function_node", "module_node", "repeat_count", "tensor_node", "use_node"]

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
    check_compile_time(walk, node, val, path, "repeat")
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
        if k > 0:  # the copy chains the first input; the others go to every copy
            assert value is not None
            values = [value, *values[1:]] if isinstance(values, list) else [value]
            chained = Ref(state.calls[-1].node)
            refs = [chained, *refs[1:]] if isinstance(refs, list) else [chained]
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
            ]
            + _device_of(node),
            value=value,
            op=op.name,
            leading=record_of(op).leading,
        )
        state.calls.append(call)
        if n is not None and k < n - 1 and not isinstance(value, TensorValue):
            raise error(walk.doc, node, "repeats, so it must return one tensor")
    assert value is not None
    return value


def _device_of(node: NodeTemplate) -> list[tuple[str, ast.expr]]:
    """``device=input_ids.device`` for a creation op's ``like:``."""
    if node.like is None:
        return []
    ref = ast.Name(node.like.name, ast.Load())
    return [("device", ast.Attribute(ref, "device", ast.Load()))]


def _call_kwargs(
    walk: Walk, state: GraphState, node: NodeTemplate, n: int | None
) -> dict[str, Val]:
    """A module node's ``call:``, evaluated: keyword arguments of its forward."""
    if not node.call:
        return {}
    if n is not None:
        raise walk.doc.error(
            (*node.path, "call"),
            f"{node.label}: call: passes keyword arguments to one module's forward, "
            "but the copies of a repeat are called in a chain with their input only",
            key=True,
        )
    return {
        key: evaluate(
            walk,
            state,
            raw,
            (*node.path, "call", key),
            what=f"{node.label}, call.{key}",
        )
        for key, raw in node.call.items()
    }


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
    # A repeat chains its first input; the others (side inputs: an attention mask)
    # go to every copy, and the copies are called in a loop.
    side = values[1:] if n is not None and isinstance(values, list) else []
    copies: list[ModuleDef] = []
    outputs: list[Value] = []
    value: Value | None = None
    bound: dict[str, Val] = {}
    call = _call_kwargs(walk, state, node, n)
    for k in range(n or 1):
        extra = {"i": const(k)} if n is not None else None
        if k > 0:
            if not isinstance(value, TensorValue):
                raise error(walk.doc, node, "repeats, so it must return one tensor")
            values = [value, *side]
        before = state.size
        mdef, value, bound = _module(walk, state, node, values, extra, call)
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
        container = "ModuleList" if side else "Sequential"
        items = _copies_code(walk, state, node, copies, outputs)
        if side:  # nn.ModuleList([a, b]), or of a generator alone
            only = items[0] if len(items) == 1 else None
            items = [
                only.value
                if isinstance(only, ast.Starred)
                else ast.List(items, ast.Load())
            ]
        module = ModuleDef(
            name=node.name,
            op=node.op,
            ctor=ast.Call(
                ast.Attribute(ast.Name("nn", ast.Load()), container, ast.Load()),
                items,
                [],
            ),
            line=copies[0].line,
            value_class=container,
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
            kwargs=[(k, forward_code(state, node, k, v)) for k, v in call.items()],
            value=value,
            op=node.op.name,
            loop=bool(side),
        )
    )
    return value


def _module(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    values: Values,
    extra: dict | None,
    call: dict[str, Val] | None = None,
) -> tuple[ModuleDef, Value, dict[str, Val]]:
    """One module of a node: a seq's nn.Sequential, a block instance or a torch module
    (called with the keyword arguments ``call``)."""
    assert node.op is not None
    if node.seq is not None:
        mdef, value = _sequential(walk, state, node, values, extra)
        return mdef, value, {}
    if node.op.kind == "block":
        return block_instance(walk, state, node, values, extra)
    found = torch_module(walk, state, node, values, extra, call)
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
    """Each copy of a repeat after the first takes the previous copy's output as its
    first input, and the same side inputs as the first: the inputs of a repeated
    node are written as a list, the chained one first."""
    if isinstance(values, dict) and len(values) > 1:
        raise walk.doc.error(
            (*node.path, "in"),
            f"{node.label}: a repeat chains its copies through its first input and "
            "passes the others to every copy, so its inputs are a list with the "
            "chained one first, not a mapping",
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


#: Initialisers that make the tensor's value when it is created: the rest fill a
#: ``torch.empty`` tensor in ``reset_parameters``.
_CREATION = {"zeros": "torch.zeros", "ones": "torch.ones", "constant": "torch.full"}

_TENSOR_OP = OpInfo("module", "Parameter", torch.nn.Parameter, "nn.Parameter")


def _init_name(walk: Walk, node: NodeTemplate, raw: Any) -> tuple[str, Any]:
    """The initialiser's name and its arguments as written."""
    path = (*node.path, "init")
    if isinstance(raw, str):
        name, args = raw, None
    elif isinstance(raw, dict) and len(raw) == 1:
        name, args = next(iter(raw.items()))
    else:
        raise walk.doc.error(
            path,
            f"{node.label}: init is a name (zeros, xavier_uniform) or a one-key "
            "mapping ({normal: {std: 0.02}}, {constant: 1.0e-6})",
        )
    names = sorted(
        n[:-1] for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")
    )
    if name not in names:
        raise walk.doc.error(
            path,
            f"{node.label}: unknown initialiser {name!r}"
            + suggest(name, names)
            + "; initialisers are torch.nn.init's, without the trailing underscore",
        )
    return name, args


def _fill_value(walk: Walk, state: GraphState, node: NodeTemplate, args: Any) -> Val:
    path: tuple = (*node.path, "init", "constant")
    if isinstance(args, dict) and set(args) == {"val"}:
        args, path = args["val"], (*path, "val")
    elif isinstance(args, list) and len(args) == 1:
        args, path = args[0], (*path, 0)
    val = evaluate(walk, state, args, path, what=f"{node.label}, constant")
    if isinstance(val.value, bool) or not isinstance(val.value, (int, float)):
        raise walk.doc.error(
            path,
            f"{node.label}: constant takes one number, received "
            f"{describe_value(val.value)}",
        )
    return val


def tensor_node(walk: Walk, state: GraphState, node: NodeTemplate) -> Value:
    """A ``param:`` or ``buffer:`` node: the tensor its class holds (an
    ``nn.Parameter`` or a registered buffer), and its value, which has no batch
    dimension."""
    decl = node.tensor
    assert decl is not None
    sizes: list[int] = []
    code_sizes: list[ast.expr] = []
    for k, raw in enumerate(decl.shape):
        path = (*node.path, decl.kind, k)
        val = evaluate(walk, state, raw, path, what=f"{node.label}, size {k}")
        n = val.value
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise walk.doc.error(
                path,
                f"{node.label}: size {k} must be a positive integer, received "
                f"{describe_value(n)}",
            )
        sizes.append(n)
        code_sizes.append(code(state, node, f"size{k}", val))
    dtype = getattr(torch, decl.dtype or "float32")
    if decl.kind == "param" and decl.requires_grad and not dtype.is_floating_point:
        raise walk.doc.error(
            (*node.path, "dtype"),
            f"{node.label}: a parameter of dtype {decl.dtype} cannot train; give "
            "requires_grad: false, or make it a buffer",
        )
    name, args = _init_name(walk, node, decl.init if decl.init is not None else "zeros")
    keywords: list[ast.keyword] = []
    if decl.dtype is not None and decl.dtype != "float32":
        keywords.append(ast.keyword("dtype", literal_ast(dtype)))
    creation = _CREATION.get(name, "torch.empty")
    shape_args: list[ast.expr] = list(code_sizes)
    if name == "constant":
        fill = code(state, node, "value", _fill_value(walk, state, node, args))
        shape_args = [ast.Tuple(code_sizes, ast.Load()), fill]
    elif name in _CREATION and args is not None:
        raise walk.doc.error(
            (*node.path, "init"), f"{node.label}: {name} takes no arguments"
        )
    value: ast.expr = ast.Call(ast.Name(creation, ast.Load()), shape_args, keywords)
    numel = 1
    for n in sizes:
        numel *= n
    if decl.kind == "param":
        flags = (
            []
            if decl.requires_grad
            else [ast.keyword("requires_grad", ast.Constant(False))]
        )
        value = ast.Call(ast.Name("nn.Parameter", ast.Load()), [value], flags)
    mdef = ModuleDef(
        name=node.name,
        op=_TENSOR_OP,
        ctor=value,
        line=walk.line_of(node.path),
        value_class="Parameter" if decl.kind == "param" else "Tensor",
        param_names=("value",) if decl.kind == "param" else (),
        param_shapes=(tuple(sizes),) if decl.kind == "param" else (),
        kinds={"": ()},
        num_params=numel if decl.kind == "param" else 0,
        tensor=decl.kind,
        persistent=decl.persistent,
        init=None if name in _CREATION else (decl.init, (*node.path, "init")),
    )
    state.modules.append(mdef)
    grow(walk, state, 1, node, walked=False)
    result = TensorValue.make(sizes, dtype, tuple(code_sizes), batch_dim=None)
    return bounded(walk.doc, node, result)
