"""Running ops on the meta device: tensors without data, for shapes the rules do not cover."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..spec.text import first_line
from .op_table import MAX_ELEMENTS
from .values import BATCH, TensorValue, TupleValue, Value

__all__ = [
    "MetaError",
    "ModuleFacts",
    "build_meta_module",
    "from_meta",
    "meta_inputs",
    "module_facts",
    "run_meta",
]


class MetaError(Exception):
    """An op rejected its arguments or inputs on the meta device."""


_MODULE_CACHE: dict[tuple[Any, ...], nn.Module] = {}
_MAX_CACHE = 4096


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _freeze(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def build_meta_module(
    cls: Any, args: list[Any], kwargs: dict[str, Any], *, cache: bool = True
) -> nn.Module:
    """Construct ``cls(*args, **kwargs)`` with parameters on the meta device (cached
    unless ``cache`` is false: a module about to be changed must be a fresh one)."""
    key = (cls, _freeze(args), _freeze(kwargs))
    if cache and key in _MODULE_CACHE:
        return _MODULE_CACHE[key]
    try:
        with torch.device("meta"):
            module = cls(*args, **kwargs)
    except Exception as exc:
        raise MetaError(first_line(exc, 400)) from None
    if isinstance(module, nn.Module):
        for name, param in module.named_parameters():
            if not nn.parameter.is_lazy(param) and param.numel() > MAX_ELEMENTS:
                raise MetaError(
                    f"its parameter {name!r} {list(param.shape)} would have "
                    f"{param.numel()} elements, over the limit of 2**48"
                )
    if cache:
        if len(_MODULE_CACHE) >= _MAX_CACHE:
            _MODULE_CACHE.clear()
        _MODULE_CACHE[key] = module
    return module


@dataclass(frozen=True)
class ModuleFacts:
    """What the compiler reads of a built module: its parameters and submodules."""

    class_name: str
    param_names: tuple[str, ...]  # direct parameters
    param_shapes: tuple[tuple[int, ...], ...]
    # (path, class, ((param, shape), ...)) of each module inside
    nested: tuple[tuple[str, str, tuple[tuple[str, tuple[int, ...]], ...]], ...]
    num_params: int
    # Names of each module's class and its torch.nn bases, by path ('' for itself).
    kinds: dict[str, tuple[str, ...]]


_FACTS: weakref.WeakKeyDictionary[nn.Module, ModuleFacts] = weakref.WeakKeyDictionary()


def _class_names(cls: type) -> tuple[str, ...]:
    """A module class's name and those of its bases up to (not including) nn.Module:
    an init rule for Linear also reaches a subclass of Linear."""
    return tuple(
        base.__name__
        for base in cls.__mro__
        if issubclass(base, nn.Module) and base is not nn.Module
    )


def module_facts(module: nn.Module) -> ModuleFacts:
    """The module's parameters and submodules, read once per module object (the meta
    modules are cached, so a chain of identical layers reads one module once)."""
    facts = _FACTS.get(module)
    if facts is None:
        own = list(module.named_parameters(recurse=False))
        facts = ModuleFacts(
            class_name=type(module).__name__,
            param_names=tuple(n for n, _ in own),
            param_shapes=tuple(tuple(p.shape) for _, p in own),
            nested=tuple(
                (
                    path,
                    type(sub).__name__,
                    tuple(
                        (n, tuple(p.shape))
                        for n, p in sub.named_parameters(recurse=False)
                    ),
                )
                for path, sub in module.named_modules()
                if path
            ),
            num_params=sum(p.numel() for p in module.parameters()),
            kinds={
                path: _class_names(type(sub)) for path, sub in module.named_modules()
            },
        )
        _FACTS[module] = facts
    return facts


def meta_inputs(values: list[Value]) -> list[Any]:
    return [_to_meta(v) for v in values]


def _to_meta(value: Value | None) -> Any:
    if value is None:
        return None
    if isinstance(value, TensorValue):
        return value.meta()
    return tuple(_to_meta(v) for v in value.items)


def run_meta(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` on meta tensors; any error torch raises (also one
    of size arithmetic, or a tensor made inside without a device, which is made on
    the meta device too) is a MetaError with torch's message."""
    try:
        with torch.no_grad(), torch.device("meta"):
            return fn(*args, **kwargs)
    except Exception as exc:
        raise MetaError(first_line(exc, 400)) from None


def from_meta(result: Any, like: TensorValue | None) -> Value:
    """A meta result as a Value: the batch dimension found again, sizes copied from
    ``like`` where the shape is unchanged."""
    if isinstance(result, torch.Tensor):
        shape = tuple(result.shape)
        if like is not None and shape == like.shape:
            return TensorValue(shape, result.dtype, like.sym, like.batch_dim)
        batch = next((k for k, n in enumerate(shape) if n == BATCH), None)
        return TensorValue.make(shape, result.dtype, batch_dim=batch)
    if isinstance(result, (tuple, list)):
        return TupleValue(tuple(from_meta(r, like) for r in result))
    if result is None:
        return None  # type: ignore[return-value]
    raise MetaError(f"returns {type(result).__name__}, not tensors")
