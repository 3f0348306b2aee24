"""The torch ops a spec may name: torch.nn layers with their constructors' arguments
(and which of those nnspec infers from the input), and tensor functions.

Used by the JSON Schema (so editors complete op names and check each op's arguments)
and by the compiler (which checks them with positions and suggestions).
"""

from __future__ import annotations

import ast
import inspect
import types
import typing
from functools import cache
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "INFERRED_ARGS",
    "argument_schemas",
    "constructor_signature",
    "function_names",
    "json_type",
    "module_classes",
    "parameter_names",
    "signature_of",
]

# Containers and bases that are not layers a spec can use by themselves.
_EXCLUDED = {
    "Module",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "Container",
    "DataParallel",
    "RNNBase",
    "RNNCellBase",
    "Sequential",
}


def _p(
    name: str,
    annotation: Any = inspect.Parameter.empty,
    default: Any = inspect.Parameter.empty,
) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=annotation,
        default=default,
    )


# Classes whose constructors take (*args, **kwargs): their documented arguments.
_RNN_COMMON = [
    _p("input_size", int),
    _p("hidden_size", int),
    _p("num_layers", int, 1),
]
_RNN_TAIL = [
    _p("bias", bool, True),
    _p("batch_first", bool, False),
    _p("dropout", float, 0.0),
    _p("bidirectional", bool, False),
]
_DEVICE = [_p("device", default=None), _p("dtype", default=None)]
_SIGNATURES = {
    "RNN": inspect.Signature(
        [*_RNN_COMMON, _p("nonlinearity", str, "tanh"), *_RNN_TAIL, *_DEVICE]
    ),
    "LSTM": inspect.Signature(
        [*_RNN_COMMON, *_RNN_TAIL, _p("proj_size", int, 0), *_DEVICE]
    ),
    "GRU": inspect.Signature([*_RNN_COMMON, *_RNN_TAIL, *_DEVICE]),
}


# Tensor functions that touch files, global state or anything beyond their arguments.
_EXCLUDED_FUNCTIONS = {"from_file", "set_flush_denormal", "save", "load", "compile"}
_NN_FUNCTIONAL_MODULES = {"torch.nn.functional", "torch._C._nn", "torch"}
_NOT_OPS_IN_F = {
    "boolean_dispatch",
    "handle_torch_function",
    "has_torch_function",
    "has_torch_function_unary",
    "has_torch_function_variadic",
    "assert_int_or_pair",
}

# Constructor arguments the compiler fills from the input's shape: op -> ((argument, dim), ...).
# A dim of -1 is the last dimension.
INFERRED_ARGS: dict[str, tuple[tuple[str, int], ...]] = {
    **{f"Conv{n}d": (("in_channels", 1),) for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": (("in_channels", 1),) for n in (1, 2, 3)},
    "Linear": (("in_features", -1),),
    **{f"BatchNorm{n}d": (("num_features", 1),) for n in (1, 2, 3)},
    **{f"InstanceNorm{n}d": (("num_features", 1),) for n in (1, 2, 3)},
    "SyncBatchNorm": (("num_features", 1),),
    "GroupNorm": (("num_channels", 1),),
    "LayerNorm": (("normalized_shape", -1),),
    "RMSNorm": (("normalized_shape", -1),),
    "RNN": (("input_size", -1),),
    "LSTM": (("input_size", -1),),
    "GRU": (("input_size", -1),),
    "RNNCell": (("input_size", -1),),
    "LSTMCell": (("input_size", -1),),
    "GRUCell": (("input_size", -1),),
    "MultiheadAttention": (("embed_dim", -1),),
    "TransformerEncoderLayer": (("d_model", -1),),
    "TransformerDecoderLayer": (("d_model", -1),),
    "Transformer": (("d_model", -1),),
}


@cache
def function_names() -> dict[str, tuple[Any, str]]:
    """Tensor functions a spec may name: name -> (function, generated spelling)."""
    found: dict[str, tuple[Any, str]] = {}
    aten = set(dir(torch._C._VariableFunctions))
    for name in dir(torch):
        if (
            name.startswith("_")
            or name in _EXCLUDED_FUNCTIONS
            or name.startswith("set_")
        ):
            continue
        obj = getattr(torch, name, None)
        if not callable(obj) or isinstance(obj, type):
            continue
        if name in aten or getattr(obj, "__module__", None) == "torch.functional":
            found[name] = (obj, f"torch.{name}")
    for name in dir(F):
        if name.startswith("_") or name in _NOT_OPS_IN_F or name in _EXCLUDED_FUNCTIONS:
            continue
        obj = getattr(F, name)
        if (
            callable(obj)
            and not isinstance(obj, type)
            and getattr(obj, "__module__", None) in _NN_FUNCTIONAL_MODULES
        ):
            found[name] = (obj, f"F.{name}")
    return found


@cache
def module_classes() -> dict[str, type]:
    """torch.nn layer classes by name."""
    found = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, nn.Module)
            and not name.startswith("_")
            and name not in _EXCLUDED
        ):
            found[name] = obj
    return found


@cache
def constructor_signature(cls: type) -> inspect.Signature | None:
    """The constructor's signature without ``self`` (documented arguments for RNNs)."""
    if cls.__module__.startswith("torch.nn") and cls.__name__ in _SIGNATURES:
        return _SIGNATURES[cls.__name__]
    try:
        sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    except (TypeError, ValueError):
        return None
    return sig.replace(parameters=list(sig.parameters.values())[1:])


@cache
def signature_of(target: Any) -> inspect.Signature | None:
    """The constructor's (for classes) or function's signature, when Python can tell."""
    if isinstance(target, type):
        return constructor_signature(target)
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


@cache
def parameter_names(target: Any) -> list[str]:
    """The names of a function's parameters: from its signature, or, for torch's
    builtins (which have none), from the call forms at the head of its docstring."""
    signature = signature_of(target)
    if signature is not None:
        return [
            p.name
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    name = getattr(target, "__name__", "")
    names: dict[str, None] = {}
    for line in (getattr(target, "__doc__", None) or "").splitlines():
        line = line.strip().removeprefix(".. function:: ")
        if not name or not line.startswith(f"{name}("):
            continue
        head = line.split(" -> ")[0]
        try:
            tree = ast.parse(f"def {head}: pass")
        except SyntaxError:
            continue
        fn = tree.body[0]
        assert isinstance(fn, ast.FunctionDef)
        for arg in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
            names[arg.arg] = None
    return list(names)


# An expression (see spec/editor_schema.py, which defines it for editors).
_EXPRESSION = {"$ref": "#/$defs/EditorExpression"}
_SIMPLE = {int: "integer", float: "number", bool: "boolean", str: "string"}


def json_type(annotation: Any) -> dict[str, Any]:
    """A JSON Schema for values of a Python annotation; {} where it cannot say."""
    if annotation in _SIMPLE:
        return {"type": _SIMPLE[annotation]}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [json_type(a) for a in typing.get_args(annotation)]
        if any(not o for o in options):
            return {}
        return {"anyOf": options}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    if annotation is type(None):
        return {"type": "null"}
    if origin in (tuple, list) or annotation in (tuple, list):
        return {"type": "array"}
    return {}


def argument_schemas() -> dict[str, dict[str, Any]]:
    """op name -> {argument: JSON Schema} for every torch.nn layer."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, cls in sorted(module_classes().items()):
        signature = constructor_signature(cls)
        if signature is None:
            continue
        args: dict[str, Any] = {}
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.name in ("device", "dtype"):
                continue
            schema = json_type(param.annotation)
            if schema:
                schema = {"anyOf": [schema, _EXPRESSION]}
            if param.default is not param.empty and isinstance(
                param.default, (int, float, str, bool, type(None))
            ):
                schema = {**schema, "default": param.default}
            args[param.name] = schema
        schemas[name] = args
    return schemas
