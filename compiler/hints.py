"""What to write instead: hints the compiler's errors share across passes."""

from __future__ import annotations

from typing import Any

from .ir import Ref
from .ops import OpInfo, input_names

__all__ = ["inputs_by_name", "unknown_op_hint"]

# Names that are not ops, and what to write instead.
_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
_TENSOR_HOLDERS = ("Parameter", "ParameterList", "ParameterDict", "Buffer")


def unknown_op_hint(op: str) -> str:
    """What to write for a name that looks like an op but is not one."""
    name = op.rpartition(".")[2]
    if name in _CONTAINERS:
        return (
            "; containers are not ops: list the layers in a seq node (name: body, "
            "seq: [...]), write them in a block (blocks:) and use the block as the "
            "op, or repeat: N for chained copies of a layer"
        )
    if name in _TENSOR_HOLDERS:
        return (
            f"; a bare {name} is not a layer: write a custom module that holds it "
            "(an nn.Module class in your package, op: package.module:Name, compiled "
            "with --allow-import package)"
        )
    return ""


def inputs_by_name(op: OpInfo, given: Any, key: str, ref: str) -> str:
    """``in: {query: x, key: x, value: x, attn_mask: mask}``: the node's inputs given by
    name, with ``ref`` added as its input ``key`` (``given``: the node's ``in``, written
    or lowered)."""
    names = input_names(op) or []
    if isinstance(given, (str, Ref)):
        given = [given]
    entries: list[str] = []
    if isinstance(given, dict):
        entries = [f"{k}: {v}" for k, v in given.items() if k != key]
    elif isinstance(given, list) and len(given) <= len(names):
        entries = [f"{n}: {r}" for n, r in zip(names, given) if n != key]
    elif given:
        entries = ["..."]
    return "in: {" + ", ".join([*entries, f"{key}: {ref}"]) + "}"
