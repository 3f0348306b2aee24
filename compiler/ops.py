"""What an op name means: a torch.nn module class, a tensor function, a block, or an
allowed custom import; and what Python can tell of its signature.

What else the compiler knows of a torch op (its shape rule, inferred and positional
arguments, limits) is its record in ``op_table.py``.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch.nn as nn

from ..spec.errors import suggest
from ..spec.torch_ops import (
    INFERRED_ARGS,
    function_names,
    json_type,
    module_classes,
    parameter_names,
    signature_of,
)

__all__ = [
    "INFERRED_ARGS",
    "SEQUENTIAL",
    "Arguments",
    "OpInfo",
    "OpLookupError",
    "arguments_of",
    "function_names",
    "input_names",
    "module_names",
    "parameter_names",
    "resolve_op",
    "signature_of",
]

OpKind = Literal["module", "function", "block", "factory"]


class OpLookupError(Exception):
    """An op name that does not resolve; the compiler adds the position."""


@dataclass(frozen=True)
class OpInfo:
    """A resolved op. ``code`` is how the generated source spells it."""

    kind: OpKind
    name: str
    target: Any
    code: str
    import_module: str | None = (
        None  # a custom op's module, imported by the generated file
    )

    @property
    def class_name(self) -> str:
        return self.name.rsplit(":", 1)[-1]


#: The op of a seq node: an nn.Sequential of its children.
SEQUENTIAL = OpInfo("module", "Sequential", nn.Sequential, "nn.Sequential")


def module_names() -> dict[str, type]:
    """torch.nn module classes a spec may name."""
    return module_classes()


def resolve_op(
    name: str, blocks: dict[str, Any], allow_imports: frozenset[str] = frozenset()
) -> OpInfo:
    """Resolve an op name. Raises OpLookupError with a suggestion."""
    if name in blocks:
        return OpInfo("block", name, blocks[name], name)
    if ":" in name:
        return _resolve_custom(name, allow_imports)
    if name[:1].isupper():
        modules = module_names()
        if name in modules:
            return OpInfo("module", name, modules[name], f"nn.{name}")
        raise OpLookupError(
            f"unknown op {name!r}: not a torch.nn layer or a block"
            + suggest(name, [*modules, *blocks])
        )
    functions = function_names()
    if name in functions:
        fn, code = functions[name]
        return OpInfo("function", name, fn, code)
    if "." in name:
        raise OpLookupError(f"unknown op {name!r}: {_dotted_hint(name)}")
    hint = suggest(name, list(functions))
    if not hint and name[:1].islower():
        hint = suggest(name[:1].upper() + name[1:], list(module_names()))
    raise OpLookupError(
        f"unknown op {name!r}: not a function of torch.nn.functional or torch" + hint
    )


def _dotted_hint(name: str) -> str:
    """What a dotted op name was probably meant to be."""
    module_path, _, last = name.rpartition(".")
    if module_path in ("torch.nn", "nn") and last in module_names():
        return f"torch.nn layers are named without their module: write {last!r}"
    if (
        module_path in ("torch", "torch.nn.functional", "F")
        and last in function_names()
    ):
        return f"functions are named without their module: write {last!r}"
    return (
        "a custom op is written package.module:Class, with a colon "
        f"(here {module_path + ':' + last!r})"
    )


def _resolve_custom(name: str, allow_imports: frozenset[str]) -> OpInfo:
    module_path, _, attr = name.partition(":")
    package = module_path.split(".")[0]
    if (
        not module_path
        or not attr
        or not all(p.isidentifier() for p in module_path.split("."))
    ):
        raise OpLookupError(f"custom op {name!r} must be written package.module:Name")
    if not attr.isidentifier():
        raise OpLookupError(f"custom op {name!r}: {attr!r} is not a Python name")
    if package not in allow_imports:
        raise OpLookupError(
            f"custom op {name!r} imports package {package!r}, which is not allowed; "
            f"allow it with --allow-import {package} (compile-model) or "
            f"allow_imports=[{package!r}] (nnspec.load)"
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise OpLookupError(
            f"cannot import {module_path!r} for op {name!r}: {exc}"
        ) from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise OpLookupError(
            f"module {module_path!r} has no {attr!r}" + suggest(attr, public)
        )
    target = getattr(module, attr)
    code = f"{module_path}.{attr}"
    if isinstance(target, type) and issubclass(target, nn.Module):
        return OpInfo("module", name, target, code, import_module=module_path)
    if callable(target):
        kind: OpKind = "factory" if _returns_module(target) else "function"
        return OpInfo(kind, name, target, code, import_module=module_path)
    raise OpLookupError(f"{name!r} is neither an nn.Module class nor a function")


def _returns_module(function: Any) -> bool:
    """True for a function annotated to return an nn.Module (a model factory)."""
    try:
        returned = typing.get_type_hints(function).get("return")
    except Exception:
        return False
    return isinstance(returned, type) and issubclass(returned, nn.Module)


@dataclass(frozen=True)
class Arguments:
    """What the compiler reads of an op's signature, read once per op."""

    names: tuple[str, ...]  # every parameter, in order
    #: Parameters other than ``**kwargs``, by name, in order.
    params: dict[str, inspect.Parameter]
    order: dict[str, int]  # the position of each of those
    positional: tuple[str, ...]  # those that may be given by position, in order
    positional_only: frozenset[str]
    accepted: tuple[str, ...]  # the names a keyword argument may have (no ``*args``)
    required: tuple[str, ...]  # without a default (``*args`` aside)
    defaults: tuple[tuple[str, Any], ...]
    types: dict[str, dict[str, Any]]  # JSON Schema of each annotated parameter
    var_keyword: bool  # takes ``**kwargs``


@cache
def arguments_of(target: Any) -> Arguments | None:
    """The op's parameters, when Python can tell (see ``signature_of``)."""
    signature = signature_of(target)
    if signature is None:
        return None
    every = list(signature.parameters.values())
    params = {p.name: p for p in every if p.kind is not p.VAR_KEYWORD}
    return Arguments(
        names=tuple(p.name for p in every),
        params=params,
        order={name: i for i, name in enumerate(params)},
        positional=tuple(
            p.name
            for p in params.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ),
        positional_only=frozenset(p.name for p in every if p.kind is p.POSITIONAL_ONLY),
        accepted=tuple(
            p.name for p in params.values() if p.kind is not p.VAR_POSITIONAL
        ),
        required=tuple(
            p.name
            for p in params.values()
            if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
        ),
        defaults=tuple((p.name, p.default) for p in every if p.default is not p.empty),
        types={name: json_type(p.annotation) for name, p in params.items()},
        var_keyword=len(params) < len(every),
    )


def input_names(op: OpInfo) -> list[str] | None:
    """The names an op's inputs may be given by (``in: {name: ref}``); None when any
    name may be accepted or Python cannot tell. Blocks name theirs in the spec."""
    if op.kind == "block":
        return None
    if op.kind == "module":
        try:
            signature = inspect.signature(op.target.forward)
        except (TypeError, ValueError):
            return None
        params = list(signature.parameters.values())[1:]
    else:
        found = signature_of(op.target)
        if found is None:
            return parameter_names(op.target) or None
        params = list(found.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not p.VAR_POSITIONAL]
