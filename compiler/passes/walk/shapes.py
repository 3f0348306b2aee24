"""Shape inference for one node: inputs and bound arguments -> its output value.

Takes the node's input values and bound arguments (and, for a module, the module
built on the meta device); gives its output value. The op's record (op_table) has a
closed-form rule for the common ops; an op without one, or a case its rule does not
cover (it raises Fallback), runs on the meta device. A rule's ShapeError is the
spec's mistake, reported at the node; any other exception from a rule is a bug in
nnspec and surfaces as ShapeRuleBug, naming the op and the rule.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import torch

from ....spec.errors import suggest
from ...expressions import Val, const, is_const, literal_ast
from ...ir import NodeTemplate
from ...meta import MetaError, build_meta_module, from_meta, meta_inputs, run_meta
from ...op_table import OpRecord, record_of
from ...ops import OpInfo, arguments_of, parameter_names, signature_of
from ...shape_rules import Fallback, ShapeCall, ShapeError, ShapeRuleBug
from ...values import BATCH, TensorValue, TupleValue, Value
from .state import Walk, bounded, node_error
from .types import check_module_valued

__all__ = [
    "fixed_sizes",
    "function_shape",
    "literal_inputs",
    "literal_sizes",
    "meta_module",
    "module_shape",
    "run_module",
    "run_rule",
    "submodule_input",
]

# The shape rule's hint for an Embedding given floats, and the one for a shared Embedding.
_DECLARE_INTEGERS = "(declare the input with dtype: int64)"
_SHARED_EMBEDDING = (
    "(a shared Embedding looks up integer indices, as in its first use: it cannot be "
    "called on floats; a projection onto its weights needs a custom module)"
)
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")


def run_rule(
    record: OpRecord, inputs: list[Value], args: dict[str, Val]
) -> Value | None:
    """The record's rule applied; None where it does not cover the case (Fallback).
    ShapeError passes through; anything else is a ShapeRuleBug."""
    assert record.rule is not None
    try:
        return record.rule(ShapeCall(record.name, inputs, args))
    except ShapeError:
        raise
    except Fallback:
        return None
    except Exception as exc:
        raise ShapeRuleBug(
            f"internal error: the shape rule of {record.name} ({record.rule_name}) "
            f"raised {type(exc).__name__}: {exc}; this is a bug in nnspec, not a "
            "mistake in the spec"
        ) from exc


def fixed_sizes(
    value: Value, inputs: list[Value] | dict[str, Value], args: list[Val]
) -> Value:
    """``value`` with its unknown symbolic sizes written as the literals they are,
    when nothing it was computed from names a parameter (the model's layers after
    its declared inputs: their sizes are literals, whatever op made them)."""
    if literal_inputs(inputs, args):
        return literal_sizes(value)
    return _folded(value)


def _folded(value: Value) -> Value:
    """``value`` with sizes that name no parameter written as their literals
    (``4``, not ``8 // 2``)."""
    if isinstance(value, TupleValue):
        return TupleValue(tuple(None if v is None else _folded(v) for v in value.items))
    if isinstance(value, TensorValue) and any(
        s is not None and not isinstance(s, ast.Constant) and is_const(s)
        for s in value.sym
    ):
        sym = tuple(
            literal_ast(n) if s is not None and is_const(s) else s
            for n, s in zip(value.shape, value.sym)
        )
        return TensorValue(value.shape, value.dtype, sym, value.batch_dim)
    return value


def literal_inputs(inputs: list[Value] | dict[str, Value], args: list[Val]) -> bool:
    """True when no size of the inputs and no argument names a parameter."""
    listed = list(inputs.values()) if isinstance(inputs, dict) else inputs
    for item in listed:
        if isinstance(item, TupleValue):
            return False
        if isinstance(item, TensorValue) and not all(
            is_const(s) for k, s in enumerate(item.sym) if k != item.batch_dim
        ):
            return False
    return all(is_const(a.sym) for a in args)


def literal_sizes(value: Value) -> Value:
    if isinstance(value, TupleValue):
        return TupleValue(
            tuple(None if v is None else literal_sizes(v) for v in value.items)
        )
    if isinstance(value, TensorValue):
        sym = tuple(
            s if s is not None or k == value.batch_dim else literal_ast(n)
            for k, (n, s) in enumerate(zip(value.shape, value.sym))
        )
        return TensorValue(value.shape, value.dtype, sym, value.batch_dim)
    return value


def describe_inputs(values: list[Value] | dict[str, Value]) -> str:
    """'[B,4,5], [B,6,7], run with B=7': torch's own message shows the stand-in
    batch size as a number, so say which."""
    listed = list(values.values()) if isinstance(values, dict) else values
    if isinstance(values, dict):
        text = ", ".join(f"{k}={v.render()}" for k, v in values.items())
    else:
        text = ", ".join(v.render() for v in values) or "none"
    batched = any(
        isinstance(v, TensorValue) and v.batch_dim is not None for v in listed
    )
    return f"{text}, run with B={BATCH}" if batched else text


def module_shape(
    walk: Walk,
    node: NodeTemplate,
    op: OpInfo,
    module: Any,
    bound: dict[str, Val],
    values: list[Value] | dict[str, Value],
    rules: bool = True,
    context: str = "",
    call: dict[str, Any] | None = None,
) -> Value:
    """The module's output for these inputs (and the keyword arguments ``call``);
    errors are the node's, after ``context``. ``rules=False``: always run it (a
    patched module)."""
    record = record_of(op)
    if rules and record.rule is not None and isinstance(values, list):
        arguments = arguments_of(op.target)
        full = dict(bound)
        for name, default in arguments.defaults if arguments else ():
            if name not in full:
                full[name] = const(default)
        try:
            value = run_rule(record, list(values), full)
        except ShapeError as exc:
            message = str(exc)
            if node.use is not None and _DECLARE_INTEGERS in message:
                # The input is the graph's own float tensor, not a declared one.
                message = message.replace(_DECLARE_INTEGERS, _SHARED_EMBEDDING)
            raise node_error(walk.doc, node, f"{context}{message}", exc.at) from None
        if value is not None:
            value = fixed_sizes(value, values, list(bound.values()))
            return bounded(walk.doc, node, value, context)
    result = run_module(walk, node, module, values, context, call)
    like = values[0] if isinstance(values, list) and values else None
    try:
        value = from_meta(result, like if isinstance(like, TensorValue) else None)
        value = fixed_sizes(value, values, list(bound.values()))
        return bounded(walk.doc, node, value, context)
    except MetaError as exc:
        raise node_error(walk.doc, node, f"{context}{exc}") from None


def function_shape(
    walk: Walk,
    node: NodeTemplate,
    values: list[Value] | dict[str, Value],
    args: list[Val],
    kwargs: dict[str, Val],
) -> Value:
    """A function node's output: by its rule when its arguments are the ones the
    rule reads, else by calling the function on meta tensors."""
    assert node.op is not None
    record = record_of(node.op)
    if record.rule is not None and isinstance(values, list):
        names = [n for n, _ in record.rule_params]
        bound = dict(kwargs)
        # A keyword the rule does not read, of a builtin whose names were not
        # checked before (it has no Python signature): torch must see it.
        unchecked = signature_of(node.op.target) is None and any(
            key not in names for key in kwargs
        )
        # A parameter given both by position and by keyword: torch's error.
        twice = any(name in kwargs for name in names[: len(args)])
        if len(args) <= len(names) and not unchecked and not twice:
            bound.update(zip(names, args))
            for name, default in record.rule_params:
                bound.setdefault(name, const(default))
            try:
                value = run_rule(record, list(values), bound)
            except ShapeError as exc:
                raise node_error(walk.doc, node, str(exc), exc.at) from None
            if value is not None:
                value = fixed_sizes(value, values, [*args, *kwargs.values()])
                return bounded(walk.doc, node, value)
    arg_values = [a.value for a in args]
    kw_values = {k: v.value for k, v in kwargs.items()}
    if isinstance(values, dict):
        call_kwargs = {
            **dict(zip(values, meta_inputs(list(values.values())))),
            **kw_values,
        }
        call_args = arg_values
        like = None
    else:
        metas = meta_inputs(values)
        lead = record.leading
        call_args = (
            arg_values[:lead]
            + ([metas] if record.sequence else metas)
            + arg_values[lead:]
        )
        call_kwargs = kw_values
        like = values[0] if values and isinstance(values[0], TensorValue) else None
    try:
        result = run_meta(node.op.target, call_args, call_kwargs)
        value = fixed_sizes(from_meta(result, like), values, [*args, *kwargs.values()])
        return bounded(walk.doc, node, value)
    except MetaError as exc:
        unknown = _UNEXPECTED_KEYWORD.search(str(exc))
        if unknown and unknown.group(1) in node.kwargs:
            key = unknown.group(1)
            names = parameter_names(node.op.target)
            raise walk.doc.error(
                (*node.path, key),
                f"{node.label} has no argument {key!r}"
                + suggest(key, names)
                + (f"; its arguments: {', '.join(names)}" if names else ""),
                key=True,
            ) from None
        shapes = describe_inputs(values)
        raise node_error(walk.doc, node, f"{exc} (inputs: {shapes})") from None


def run_module(
    walk: Walk,
    node: NodeTemplate,
    module: Any,
    values: list[Value] | dict[str, Value],
    context: str = "",
    call: dict[str, Any] | None = None,
) -> Any:
    """The module called on meta tensors of ``values`` (and the keyword arguments
    ``call``); torch's error at the node."""
    try:
        if isinstance(values, dict):
            kwargs = dict(zip(values, meta_inputs(list(values.values()))))
            return run_meta(module, [], {**kwargs, **(call or {})})
        return run_meta(module, meta_inputs(values), dict(call or {}))
    except MetaError as exc:
        raise node_error(
            walk.doc, node, f"{context}{exc} (inputs: {describe_inputs(values)})"
        ) from None


def meta_module(
    walk: Walk,
    node: NodeTemplate,
    op: OpInfo,
    bound: dict[str, Val],
    fresh: bool = False,
) -> Any:
    """The op's module built on the meta device (cached unless ``fresh``)."""
    check_module_valued(walk, node, op)
    arguments = arguments_of(op.target)
    positional_only = arguments.positional_only if arguments else frozenset()
    args = [v.value for k, v in bound.items() if k in positional_only]
    kwargs = {k: v.value for k, v in bound.items() if k not in positional_only}
    try:
        return build_meta_module(op.target, args, kwargs, cache=not fresh)
    except MetaError as exc:
        raise node_error(
            walk.doc, node, f"{op.class_name} cannot be built: {exc}"
        ) from None


def submodule_input(
    walk: Walk,
    node: NodeTemplate,
    module: torch.nn.Module,
    child: str,
    values: list[Value] | dict[str, Value],
    where: tuple,
) -> TensorValue:
    """What submodule ``child`` of ``module`` receives when the module runs on
    ``values`` (found by running it on the meta device); errors at ``where``."""
    try:
        old = module.get_submodule(child)
    except AttributeError:
        known = [name for name, _ in module.named_modules() if name]
        raise walk.doc.error(
            where,
            f"{node.op_name} has no submodule {child!r}{suggest(child, known)}; "
            f"its submodules: {', '.join(known[:20])}",
            key=True,
        ) from None
    seen: list[Any] = []
    handle = old.register_forward_pre_hook(
        lambda _m, args, seen=seen: seen.append(args)
    )
    try:
        run_module(walk, node, module, values)
    finally:
        handle.remove()
    if not seen or not seen[0] or not isinstance(seen[0][0], torch.Tensor):
        raise walk.doc.error(
            where, f"{child!r} is not called with a tensor in forward", key=True
        )
    received = from_meta(seen[0][0], None)
    assert isinstance(received, TensorValue)
    return received
