"""Argument types: whether a value fits the JSON Schema of an op's parameter, and
which parameters take a module (which a spec cannot write).

Takes a value and a schema (``ops.Arguments.types``), or an op; gives the check
and the words an error uses for what was expected.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

import torch

from ...ir import NodeTemplate
from ...ops import OpInfo
from .state import Walk

__all__ = ["check_module_valued", "expected_words", "fits"]

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "array": "a list",
    "null": "null",
}
_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, (list, tuple)),
    "null": lambda v: v is None,
}


def fits(value: Any, schema: dict[str, Any]) -> bool:
    """Whether a value fits the JSON Schema of a constructor argument ({} fits all)."""
    if "anyOf" in schema:
        return any(fits(value, option) for option in schema["anyOf"])
    if "enum" in schema:
        return value in schema["enum"]
    check = _TYPE_CHECKS.get(schema.get("type", ""))
    return check is None or check(value)


def expected_words(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        words = [expected_words(option) for option in schema["anyOf"]]
        return " or ".join(dict.fromkeys(words))
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    return _TYPE_WORDS.get(schema.get("type", ""), "another value")


def check_module_valued(walk: Walk, node: NodeTemplate, op: OpInfo) -> None:
    """A constructor argument that takes a module cannot be written in a spec."""
    takes = _module_valued(op.target)
    for key in node.kwargs:
        if key in takes:
            example = (
                " ({op: TransformerEncoderLayer, repeat: N, d_model: ..., nhead: "
                "...} is a TransformerEncoder's stack)"
                if op.name == "TransformerEncoder"
                else ""
            )
            raise walk.doc.error(
                (*node.path, key),
                f"{node.label}: {key} takes a module, and module-valued "
                "arguments are not supported (a spec writes numbers, strings and "
                "lists): write the layers as nodes, in a block (blocks:) or with "
                f"repeat{example}, or build the module in a factory of an allowed "
                "package (a function annotated to return nn.Module, op: "
                "package.module:function)",
                key=True,
            )


def _holds_module(hint: Any) -> bool:
    if isinstance(hint, type):
        return issubclass(hint, torch.nn.Module)
    return any(_holds_module(arg) for arg in typing.get_args(hint))


@functools.cache
def _module_valued(target: Any) -> frozenset[str]:
    """The constructor arguments of a module class annotated to take a module."""
    if not isinstance(target, type):
        return frozenset()
    try:
        hints = typing.get_type_hints(vars(target).get("__init__", target.__init__))  # type: ignore[misc]
    except Exception:
        return frozenset()
    return frozenset(
        name for name, hint in hints.items() if name != "return" and _holds_module(hint)
    )
