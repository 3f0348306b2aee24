"""Binding a node's arguments: spec values -> evaluated, checked constructor arguments.

Takes a node template and the graph's scope; gives its arguments as ``Val``s by
parameter name, in signature order, with the inferred ones (``in_channels``, ...)
filled from the first input. Checks, each at the key the spec writes: types against
the op's signature (its JSON Schema), numeric limits (op_table), inferred arguments
written anyway against the input, block params against their declarations.
"""

from __future__ import annotations

import ast
import copy
from typing import Any

import torch

from ....spec.errors import describe_value, suggest
from ....spec.model import DTYPES
from ...expressions import Val, is_const, literal_ast
from ...ir import GraphTemplate, NodeTemplate, ParamDecl
from ...op_table import OpRecord, record_of
from ...ops import OpInfo, arguments_of, parameter_names
from ...values import TensorValue, Value
from .state import GraphState, Walk, count, evaluate, node_error
from .types import expected_words, fits

__all__ = [
    "bind_block_params",
    "bind_module_args",
    "check_compile_time",
    "check_function_limits",
    "evaluate_node_args",
]

_PY_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
    "list": list,
}


def evaluate_node_args(
    walk: Walk, state: GraphState, node: NodeTemplate, extra: dict | None
) -> tuple[list[Val], dict[str, Val]]:
    """A node's positional and keyword arguments, evaluated."""
    args = [
        evaluate(
            walk,
            state,
            a,
            (*node.path, "args", j),
            extra,
            what=f"{node.label}, args[{j}]",
        )
        for j, a in enumerate(node.args)
    ]
    kwargs = {
        key: evaluate(
            walk, state, v, (*node.path, key), extra, what=f"{node.label}, {key}"
        )
        for key, v in node.kwargs.items()
    }
    if "dtype" in kwargs and node.op is not None and node.op.kind != "block":
        kwargs["dtype"] = _dtype_value(walk, node, kwargs["dtype"])
    return args, kwargs


def _dtype_value(walk: Walk, node: NodeTemplate, val: Val) -> Val:
    """``dtype: int64`` is ``torch.int64``: a dtype argument written by name."""
    if not isinstance(val.value, str):
        return val
    name = val.value.removeprefix("torch.")
    dtype = getattr(torch, name, None) if name.isidentifier() else None
    if not isinstance(dtype, torch.dtype):
        assert node.op is not None
        if node.op.import_module is not None:
            return val  # a custom op's own meaning of the word
        raise walk.doc.error(
            (*node.path, "dtype"),
            f"{node.label}, dtype: expected a dtype name ({', '.join(DTYPES)}), "
            f"received {val.value!r}" + suggest(name, list(DTYPES)),
        )
    if val.sym is None or is_const(val.sym):
        return Val(dtype, literal_ast(dtype))
    # A block param: the block's class looks its value up at build time.
    getattr_call = ast.Call(
        ast.Name("getattr", ast.Load()),
        [ast.Name("torch", ast.Load()), val.sym],
        [],
    )
    return Val(dtype, getattr_call)


def check_compile_time(
    walk: Walk, node: NodeTemplate, val: Val, path: tuple, what: str
) -> None:
    """A value that must be known when the module is built: one known only at run
    time (the batch size, a named input size, ``training``) is a located error."""
    if val.runtime is None:
        return
    reads_mode = any(
        isinstance(n, ast.Attribute) and n.attr == "training"
        for n in ast.walk(val.runtime)
    )
    kind = (
        "the module's mode (training), known only at run time"
        if reads_mode
        else "a size known only at run time (the batch or a named input size)"
    )
    raise walk.doc.error(
        path,
        f"{node.label}, {what}: {kind}, written {ast.unparse(_shown(val))} in "
        f"forward; {what} must be known when the module is built: use it in a "
        "function node's argument or in call:",
    )


def _shown(val: Val) -> ast.expr:
    """The run-time expression with its compile-time parts as their values."""
    assert val.runtime is not None
    holes = {name: literal_ast(v.value) for name, v in val.holes}

    class Fill(ast.NodeTransformer):
        def visit_Name(self, n: ast.Name) -> ast.expr:
            return holes.get(n.id, n)

    return Fill().visit(copy.deepcopy(val.runtime))


def bind_module_args(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    op: OpInfo,
    first: TensorValue | None,
    extra: dict | None,
) -> dict[str, Val]:
    """Evaluated constructor arguments, inferred ones included, in signature order."""
    record = record_of(op)
    arguments = arguments_of(op.target)
    args, kwargs = evaluate_node_args(walk, state, node, extra)
    for j, a in enumerate(args):
        check_compile_time(walk, node, a, (*node.path, "args", j), f"args[{j}]")
    for key, v in kwargs.items():
        check_compile_time(walk, node, v, (*node.path, key), key)
    rank = first.rank if first is not None else None
    _check_limits(walk, node, record, [(k, v, (k,)) for k, v in kwargs.items()], rank)
    inferred: dict[str, Val] = {}
    for arg in record.inferred if first is not None else ():
        assert first is not None
        if (
            not -first.rank <= arg.dim < first.rank
            or arg.dim % first.rank == first.batch_dim
        ):
            raise node_error(
                walk.doc,
                node,
                f"cannot infer {arg.name}: its input {first.render()} has no dim "
                f"{arg.dim}",
            )
        dim = arg.dim % first.rank
        dim_val = first.dim_val(dim)
        assert dim_val is not None
        if arg.name in kwargs:
            _check_inferred(
                walk, node, arg.name, kwargs[arg.name].value, first, dim, arg.trailing
            )
            continue
        inferred[arg.name] = dim_val
    if arguments is None:
        return {**inferred, **kwargs}
    positional = [name for name in arguments.positional if name not in inferred]
    bound: dict[str, Val] = dict(inferred)
    if len(args) > len(positional):
        raise walk.doc.error(
            (*node.path, "args"),
            f"{node.label} takes at most {count(len(positional), 'positional argument')} "
            f"({', '.join(positional)}), received {len(args)}",
            key=True,
        )
    written: dict[str, tuple] = {}
    for j, (name, val) in enumerate(zip(positional, args)):
        bound[name] = val
        written[name] = (*node.path, "args", j)
    _check_limits(
        walk,
        node,
        record,
        [
            (name, val, ("args", j))
            for j, (name, val) in enumerate(zip(positional, args))
        ],
        rank,
    )
    for key, val in kwargs.items():
        if key in bound and key not in inferred:
            raise walk.doc.error(
                (*node.path, key),
                f"{node.label}: {key!r} is also given in args",
                key=True,
            )
        bound[key] = val
        written[key] = (*node.path, key)
    for name, at in written.items():
        expected = arguments.types.get(name, {})
        value = bound[name].value
        if not fits(value, expected):
            raise walk.doc.error(
                at,
                f"{node.label}, {name}: expected {expected_words(expected)}, "
                f"received {describe_value(value)}",
            )
    missing = [name for name in arguments.required if name not in bound]
    if missing:
        raise node_error(
            walk.doc,
            node,
            f"missing required argument{'s' if len(missing) > 1 else ''} "
            + ", ".join(missing),
        )
    order = arguments.order
    return dict(sorted(bound.items(), key=lambda kv: order.get(kv[0], len(order))))


def _check_limits(
    walk: Walk,
    node: NodeTemplate,
    record: OpRecord,
    given: list[tuple[str, Val, tuple]],
    rank: int | None,
) -> None:
    """Numeric arguments in their ranges (the op's limits), before any shape
    arithmetic or tensor is made of them: ``stride must be >= 1, got 0`` at the
    value (the list item) that is out of range."""
    for name, val, at in given:
        problems = record.limit_problems(name, val.value, rank)
        if problems:
            index, message = problems[0]
            raise node_error(
                walk.doc, node, message, at if index is None else (*at, index)
            )


def check_function_limits(
    walk: Walk,
    node: NodeTemplate,
    values: list[Value] | dict[str, Value],
    args: list[Val],
    kwargs: dict[str, Val],
) -> None:
    """The limits of a function's arguments: keywords by name, positional ones by
    the parameters that follow the tensor inputs."""
    assert node.op is not None
    record = record_of(node.op)
    listed = list(values.values()) if isinstance(values, dict) else values
    first = listed[0] if listed and isinstance(listed[0], TensorValue) else None
    rank = first.rank if first is not None else None
    given: list[tuple[str, Val, tuple]] = [(k, v, (k,)) for k, v in kwargs.items()]
    if args and isinstance(values, list):
        skip = 1 if record.sequence else len(values)
        names = parameter_names(node.op.target)[skip:]
        given += [(n, a, ("args", j)) for j, (n, a) in enumerate(zip(names, args))]
    _check_limits(walk, node, record, given, rank)


def _check_inferred(
    walk: Walk,
    node: NodeTemplate,
    arg: str,
    given: Any,
    first: TensorValue,
    dim: int,
    trailing: bool,
) -> None:
    """An argument the compiler infers, written anyway: it must match the input."""
    hint = f"; leave {arg} out and nnspec infers it"
    if trailing:
        shape = [given] if isinstance(given, int) else given
        n = len(shape) if isinstance(shape, (list, tuple)) else 0
        if 0 < n < first.rank and list(first.shape[first.rank - n :]) == list(shape):
            return
        if n >= first.rank:
            have = f"has only {first.rank - 1} dimensions besides the batch"
        elif n > 1:
            have = f"ends with {list(first.shape[first.rank - n :])}"
        else:
            have = f"has {first.shape[dim]} in dim {dim}"
        raise walk.doc.error(
            (*node.path, arg),
            f"{node.label}: {arg} is {given!r}, but its input {first.render()} "
            f"{have}{hint}",
        )
    if given != first.shape[dim]:
        raise walk.doc.error(
            (*node.path, arg),
            f"{node.label}: {arg} is {given!r}, but its input {first.render()} has "
            f"{first.shape[dim]} in dim {dim}{hint}",
        )


def bind_block_params(
    walk: Walk,
    state: GraphState,
    node: NodeTemplate,
    block: GraphTemplate,
    extra: dict | None,
) -> dict[str, Val]:
    """The params a node gives a block, by name, checked against its declarations."""
    decls: dict[str, ParamDecl] = block.params
    names = list(decls)
    if len(node.args) > len(names):
        raise walk.doc.error(
            (*node.path, "args"),
            f"{node.label}: block {block.name} takes "
            f"{count(len(names), 'param')} ({', '.join(names)}), received "
            f"{count(len(node.args), 'positional argument')}",
            key=True,
        )
    # (Unknown param names were reported when the graph was lowered.)
    args, kwargs = evaluate_node_args(walk, state, node, extra)
    for j, a in enumerate(args):
        check_compile_time(walk, node, a, (*node.path, "args", j), f"args[{j}]")
    for key, v in kwargs.items():
        check_compile_time(walk, node, v, (*node.path, key), key)
    given: dict[str, Val] = dict(zip(names, args))
    written = {name: (*node.path, "args", j) for j, name in enumerate(given)}
    for key, val in kwargs.items():
        if key in given:
            raise walk.doc.error(
                (*node.path, key),
                f"{node.label}: {key!r} is also given in args",
                key=True,
            )
        given[key] = val
        written[key] = (*node.path, key)
    for name, decl in decls.items():
        if name not in given and decl.required:
            raise node_error(walk.doc, node, f"block {block.name} needs param {name!r}")
        if name in given and decl.type in _PY_TYPES:
            value = given[name].value
            ok = isinstance(value, _PY_TYPES[decl.type]) and not (
                decl.type in ("int", "float") and isinstance(value, bool)
            )
            if not ok and not (value is None and not decl.required):
                raise walk.doc.error(
                    written[name],
                    f"{node.label}, param {name!r}: expected {decl.type}, "
                    f"received {describe_value(value)}",
                )
    return given
