"""A Dataset's items, checked as they are collated: each item's structure, and each
array's shape against the one every item must have.

A bad item does not raise in the worker that collates it (the loader would wrap the
error in a traceback of the worker): the batch comes back as a ``BadItem`` naming
its row, and the main process raises a TrainError naming the sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["BadItem", "ItemCollate", "ItemError", "item_arrays"]


_REAL = frozenset(
    {
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
    }
)


class ItemError(Exception):
    """An item a source cannot make (an image that does not decode): the message
    names the file."""


@dataclass(frozen=True)
class BadItem:
    """In place of a batch: item ``row`` of it is wrong, as ``message`` says."""

    row: int
    message: str


def item_arrays(
    item: Any, names: Sequence[str], items: Sequence[str]
) -> dict[str, Any] | str:
    """The item's values by name, or what is wrong with it. A mapping is read by
    name; a tuple (or list) by position, ``items[k]`` naming position k."""
    if isinstance(item, Mapping):
        missing = [name for name in names if name not in item]
        if missing:
            present = ", ".join(map(str, item)) or "nothing"
            return f"it has no {missing[0]!r}; it has: {present}"
        return {name: item[name] for name in names}
    if isinstance(item, (tuple, list)):
        if len(item) != len(items):
            return (
                f"it is a {type(item).__name__} of {len(item)}, but its positions "
                f"are named [{', '.join(items)}] ({len(items)})"
            )
        by_name = dict(zip(items, item))
        missing = [name for name in names if name not in by_name]
        if missing:  # pragma: no cover - the reader checks items names all
            return f"no position of it is named {missing[0]!r}"
        return {name: by_name[name] for name in names}
    return (
        f"it is a {type(item).__name__}; items are mappings of name -> tensor or "
        "tuples (name their positions with the source's items:)"
    )


def as_array(value: Any) -> Tensor | str:
    """The value as a tensor of real numbers, or why it is not one."""
    if isinstance(value, Tensor):
        if value.dtype in _REAL and value.layout == torch.strided:
            return value  # the common case, at once
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            lines = str(exc).strip().splitlines()
            return f"it is not a tensor ({lines[0] if lines else type(exc).__name__})"
    if tensor.layout != torch.strided:
        return "it is a sparse tensor; items hold dense ones"
    if tensor.is_complex() or tensor.is_quantized:
        return f"it holds {str(tensor.dtype).removeprefix('torch.')} values"
    return tensor


class ItemCollate:
    """The DataLoader's collate: checks each item, then stacks its arrays."""

    def __init__(
        self,
        names: Sequence[str],
        items: Sequence[str],
        shapes: Mapping[str, tuple[int, ...]] | None,
    ) -> None:
        self.names = tuple(names)
        self.items = tuple(items)
        self.shapes = dict(shapes) if shapes is not None else None

    def __call__(self, items: list[Any]) -> dict[str, Tensor] | BadItem:
        for item in items:
            if isinstance(item, BadItem):  # made by the items' source: its own row
                return item
        columns: dict[str, list[Tensor]] = {name: [] for name in self.names}
        for row, item in enumerate(items):
            values = item_arrays(item, self.names, self.items)
            if isinstance(values, str):
                return BadItem(row, values)
            for name, value in values.items():
                tensor = as_array(value)
                if isinstance(tensor, str):
                    return BadItem(row, f"{name!r}: {tensor}")
                expected = (
                    self.shapes[name]
                    if self.shapes is not None
                    else (tuple(columns[name][0].shape) if columns[name] else None)
                )
                if expected is not None and tuple(tensor.shape) != expected:
                    return BadItem(
                        row,
                        f"{name!r} has shape {list(tensor.shape)}, but every item's "
                        f"{name!r} has shape {list(expected)}",
                    )
                columns[name].append(tensor)
        return {name: torch.stack(values) for name, values in columns.items()}
