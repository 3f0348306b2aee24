"""``--set`` overrides of the train section, written into the spec's document.

A mistake under an overridden key points at its nearest written ancestor in the
spec and names the ``--set`` it came from.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec.errors import Diagnostic
from ..spec.yaml_source import Document, Path

__all__ = ["apply_overrides", "show_value"]


@dataclass
class _OverriddenDocument(Document):
    """The spec's document with ``--set`` values written in. Mistakes under an
    overridden key point at its nearest written ancestor and name the ``--set``."""

    overrides: dict[Path, str] = field(default_factory=dict)

    def diagnostic(self, path: Path, message: str, *, key: bool = False) -> Diagnostic:
        diag = super().diagnostic(path, message, key=key)
        origin = self._origin(tuple(path))
        if origin is None:
            return diag
        return Diagnostic(
            diag.path, diag.line, diag.column, f"{message} (from --set {origin})"
        )

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """A key the spec does not have, written by an override, is shown at the key
        of its nearest written ancestor (``data:``, ``train:``), not at the first
        entry of that ancestor's mapping."""
        path = tuple(path)
        if (
            path in self.marks
            or (key and path in self.key_marks)
            or self._origin(path) is None
        ):
            return super().where(path, key=key)
        ancestor = path[:-1]
        while ancestor and ancestor not in self.marks:
            ancestor = ancestor[:-1]
        if ancestor in self.key_marks:
            return self.key_marks[ancestor]
        return super().where(ancestor)

    def _origin(self, path: Path) -> str | None:
        for written, text in self.overrides.items():
            if path[: len(written)] == written:
                return text
            # A mapping the override wrote into (the optimizer of optimizer.lr), or
            # a key it created on the way to the value.
            if written[: len(path)] == path and (
                len(path) > 1 or path not in self.marks
            ):
                return text
        return None


def apply_overrides(doc: Document, overrides: Mapping[str, Any]) -> Document:
    """A document whose train section has ``{"optimizer.lr": 0.01, ...}`` written in."""
    if not overrides:
        return doc
    data = dict(doc.data)  # a copy of the train section; the rest is shared
    data["train"] = copy.deepcopy(doc.data["train"])
    written: dict[Path, str] = {}
    for dotted, value in overrides.items():
        parts = tuple(p for p in dotted.split("."))
        if not all(parts):
            raise doc.error(("train",), f"--set {dotted}: empty key in {dotted!r}")
        node = data["train"]
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        written[("train", *parts)] = f"{dotted}={show_value(value)}"
    return _OverriddenDocument(
        path=doc.path,
        source=doc.source,
        data=data,
        marks=doc.marks,
        key_marks=doc.key_marks,
        origins=doc.origins,
        overrides=written,
    )


def show_value(value: Any) -> str:
    """A value as YAML flow text, as it is written after --set KEY=."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{show_value(k)}: {show_value(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)
