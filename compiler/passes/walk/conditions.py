"""Conditional nodes (``when:``): a node that is absent where its condition is false,
its first input passed through in its place.

Takes a node with a ``when`` and the graph's state; evaluates the condition. Where
it is known when the spec compiles (the model's graph, or a literal in a block) a
false node is left out: later references to it mean its first input. In a block
class whose condition reads the block's params or input sizes, the node is
conditional in the class: a module is built ``... if <condition> else None`` and
called under ``if self.<name> is not None:``; a function's condition is stored on
``self`` (``self.use_<name>``) and its statement runs under ``if``. Each use walks
its own case: present, the node is elaborated as any other; absent, a placeholder
module and call carry the node's name, condition and the value passed through.
"""

from __future__ import annotations

import ast
import re

from ....spec.errors import SpecError, describe_value
from ...expressions import Val, is_const
from ...ir import Call, CallKind, ModuleDef, NodeTemplate, Ref
from ...values import Value
from .ctor import code
from .modules import torch_module
from .state import GraphState, Walk, evaluate

__all__ = ["absent_in_class", "condition", "first_input", "mark_conditional"]

Values = list[Value] | dict[str, Value]
Refs = list[Ref] | dict[str, Ref]


def condition(walk: Walk, state: GraphState, node: NodeTemplate) -> Val:
    """The node's condition, evaluated and checked to be a bool."""
    path = (*node.path, "when")
    seen = _values_read(node.when, state)
    if seen:
        raise walk.doc.error(
            path,
            f"{node.label}, when: {seen!r} is a value computed when forward runs; "
            "a condition reads params and sizes "
            f"({seen}.shape[1]), so that it is known when the module is built",
        )
    val = evaluate(walk, state, node.when, path, what=f"{node.label}, when")
    if not isinstance(val.value, bool):
        raise walk.doc.error(
            path,
            f"{node.label}: when must be true or false, received "
            f"{describe_value(val.value)}",
        )
    return val


_EXPRESSION = re.compile(r"\$\{([^}]*)\}")


def _values_read(raw: object, state: GraphState) -> str | None:
    """A node or input a condition reads as a value (not its ``.shape``), if any."""
    if not isinstance(raw, str):
        return None
    assert state.scope is not None
    for text in _EXPRESSION.findall(raw):
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            return None  # the evaluation reports it
        shapes = {
            id(n.value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr == "shape"
        }
        for n in ast.walk(tree):
            if (
                isinstance(n, ast.Name)
                and id(n) not in shapes
                and n.id in state.env
                and n.id not in state.scope.values
            ):
                return n.id
    return None


def known(state: GraphState, val: Val) -> bool:
    """Whether the condition is the same for every use of the class."""
    return not state.symbolic or is_const(val.sym)


def first_input(refs: Refs, values: Values) -> tuple[Ref, Value]:
    """The reference and value a node passes through when it is absent."""
    ref = next(iter(refs.values())) if isinstance(refs, dict) else refs[0]
    value = next(iter(values.values())) if isinstance(values, dict) else values[0]
    return ref, value


def _test(state: GraphState, node: NodeTemplate, val: Val) -> ast.expr:
    """The test of the node's ``if`` in forward (for a function, the condition is an
    attribute set in ``__init__``, as torchvision's ``self.use_res_connect``)."""
    assert node.op is not None
    self_name = ast.Name("self", ast.Load())
    if node.op.kind == "function":
        attr = state.names.fresh(f"use_{node.name}")
        state.attributes.append((attr, code(state, node, "when", val)))
        return ast.Attribute(self_name, attr, ast.Load())
    return ast.Compare(
        ast.Attribute(self_name, node.name, ast.Load()),
        [ast.IsNot()],
        [ast.Constant(None)],
    )


def mark_conditional(
    state: GraphState, node: NodeTemplate, val: Val, modules: int, calls: int
) -> None:
    """Make the module and calls the node just added conditional in its class."""
    test = _test(state, node, val)
    if node.op is not None and node.op.kind != "function":
        for module in state.modules[modules:]:
            module.condition = code(state, node, "when", val)
    for call in state.calls[calls:]:
        call.condition = test


def absent_in_class(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    refs: Refs,
    values: Values,
    val: Val,
) -> Value:
    """A conditional node of a block class that this use leaves out: a placeholder
    module (with the constructor other uses would build, where it can be made
    for these inputs; else ``None``) and call; its value is its first input's."""
    assert node.op is not None
    _, value = first_input(refs, values)
    shown = value  # the shape its comment shows: where built, its output
    test = _test(state, node, val)
    if node.op.kind != "function":
        ctor: ast.expr | None = None
        if node.op.kind in ("module", "factory") and node.seq is None:
            ctor, built = _speculative_ctor(walk, state, node, values)
            shown = built if built is not None else value
        module = ModuleDef(
            name=node.name,
            op=node.op,
            ctor=ctor if ctor is not None else ast.Constant(None),
            line=walk.line_of(node.path),
            value_class=node.op.name,
            block=node.op.name if node.op.kind == "block" else None,
            condition=code(state, node, "when", val),
            present=False,
        )
        state.modules.append(module)
    state.calls.append(
        Call(
            node=node.name,
            callee=f"self.{node.name}" if node.op.kind != "function" else node.op.code,
            inputs=refs,
            sequence=False,
            args=[],
            kwargs=[],
            value=shown,
            line=walk.line_of(node.path),
            op=node.op.name,
            file=walk.file_of(node.path),
            kind=CallKind.FUNCTION if node.op.kind == "function" else CallKind.MODULE,
            condition=test,
            present=False,
        )
    )
    return value


def _speculative_ctor(
    walk: Walk, state: GraphState, node: NodeTemplate, values: Values
) -> tuple[ast.expr | None, Value | None]:
    """The constructor the class would write for the node, and its output, built
    for these inputs if it can be (its own errors do not count: this use leaves
    it out)."""
    hoisted, attributes = list(state.hoisted), list(state.attributes)
    try:
        mdef, value, _ = torch_module(walk, state, node, values, None)
    except SpecError:
        state.hoisted[:], state.attributes[:] = hoisted, attributes
        return None, None
    if len(state.hoisted) != len(hoisted):  # a value only this use would pass
        state.hoisted[:], state.attributes[:] = hoisted, attributes
        return None, None
    return mdef.ctor, value
