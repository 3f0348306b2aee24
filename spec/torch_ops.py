"""The torch.nn layers a spec may name, and their constructors' arguments.

Used by the JSON Schema (so editors complete and check each op's arguments) and by the
compiler (which checks them with positions and suggestions).
"""

from __future__ import annotations

import inspect
import types
import typing
from functools import cache
from typing import Any

import torch.nn as nn

__all__ = ["argument_schemas", "constructor_signature", "json_type", "module_classes"]

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


_EXPRESSION = {"type": "string", "pattern": r"\$\{"}
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
