"""References in a graph as written: ``in:``, ``outputs:`` and ``use:`` against the
nodes defined so far.

``References`` is the base of the lowering pass (``passes/lower.py``): it collects
every problem found as a diagnostic, so that one compile reports them all.
"""

from __future__ import annotations

import keyword
from typing import Any

from ..spec.errors import Diagnostic, SpecError, suggest
from ..spec.yaml_source import Document
from .ir import NodeTemplate, Outputs, Ref

__all__ = ["References"]


class References:
    """Collected diagnostics, and references checked against the nodes so far."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.errors: list[Diagnostic] = []
        # Names of nodes of the graph being lowered that failed to lower: references
        # to them are not reported again (the node's own error is the root cause).
        self.failed: set[str] = set()

    def error(self, path: tuple, message: str, *, key: bool = False) -> None:
        """Record a problem at ``path`` (reported with the others, in order)."""
        self.errors.append(self.doc.diagnostic(path, message, key=key))

    def raise_errors(self) -> None:
        if self.errors:
            errors = sorted(self.errors, key=lambda d: (d.line, d.column))
            raise SpecError(diagnostics=errors, source=self.doc.source)

    def check_use(
        self,
        target: str,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        later: dict,
    ) -> None:
        if target not in defined or defined[target] is None:
            if target in self.failed:
                return  # that node's own error says what is wrong
            if target in later:
                self.error(path, f"'use: {target}' refers to a node defined later")
            elif target in defined:
                self.error(path, f"'use: {target}' names an input, not a layer")
            else:
                self.error(
                    path,
                    f"'use: {target}': no earlier node is called {target!r}"
                    + suggest(target, [n for n, t in defined.items() if t is not None]),
                )
            return
        node = defined[target]
        assert node is not None
        if node.tensor is not None:
            self.error(
                path,
                f"'use: {target}' names a {node.tensor.kind} node, not a layer; "
                f"use it as an input: in: {target}",
            )
        elif node.use is not None:
            self.error(
                path,
                f"'use: {target}' names a use node; name the original, {node.use!r}",
            )
        elif node.op is not None and node.op.kind == "function":
            self.error(
                path,
                f"'use: {target}': {target!r} is the function {node.op.name!r}, which holds no "
                "module to share",
            )

    def parse_ref(
        self,
        text: Any,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        later: dict[str, tuple],
        label: str,
    ) -> Ref | None:
        if not isinstance(text, str):
            self.error(
                path,
                f"{label}: a reference is a node or input name, received {text!r}",
            )
            return None
        name, *rest = text.split(".")
        try:
            index = tuple(int(p) for p in rest)
        except ValueError:
            self.error(
                path,
                f"{label}: bad reference {text!r}: after the name come only element "
                "numbers (lstm.0)",
            )
            return None
        if name not in defined:
            if name in self.failed:
                return None  # that node's own error says what is wrong
            if name in later:
                line = self.doc.where(later[name])[0]
                self.error(
                    path,
                    f"{label}: {name!r} is defined later in the graph (line {line}); a "
                    "node can only take earlier nodes or inputs",
                )
            else:
                self.error(
                    path,
                    f"{label}: unknown reference {name!r}"
                    + suggest(name, list(defined))
                    + f"; known here: {', '.join(defined) or 'none'}",
                )
            return None
        return Ref(name, index, path)

    def refs(
        self,
        raw: Any,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        later: dict[str, tuple],
        inputs: list[str],
        first: bool,
        label: str,
    ) -> list[Ref] | dict[str, Ref] | None:
        if raw is None:
            # The first node takes the first input; later ones the previous node.
            return [Ref(inputs[0], (), path)] if first and inputs else None
        if isinstance(raw, str):
            ref = self.parse_ref(raw, path, defined, later, label)
            return [ref] if ref else []
        if isinstance(raw, list):
            found = [
                self.parse_ref(r, (*path, i), defined, later, label)
                for i, r in enumerate(raw)
            ]
            return [r for r in found if r is not None]
        found_map = {
            k: self.parse_ref(v, (*path, k), defined, later, label)
            for k, v in raw.items()
        }
        for key in raw:
            if not key.isidentifier() or keyword.iskeyword(key):
                self.error((*path, key), f"{key!r} is not a valid input name", key=True)
        return {k: r for k, r in found_map.items() if r is not None}

    def outputs(
        self,
        raw: Any,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        nodes: list[NodeTemplate],
    ) -> Outputs:
        if raw is None:
            last = nodes[-1].name if nodes else next(iter(defined), "x")
            return Outputs("single", [Ref(last, (), path)], path=path)
        if isinstance(raw, str):
            ref = self.parse_ref(raw, path, defined, {}, "outputs")
            return Outputs("single", [ref] if ref else [], path=path)
        if isinstance(raw, list):
            found = [
                self.parse_ref(r, (*path, i), defined, {}, "outputs")
                for i, r in enumerate(raw)
            ]
            return Outputs("tuple", [r for r in found if r], path=path)
        keys: list[str] = []
        refs: list[Ref] = []
        for key, value in raw.items():
            ref = self.parse_ref(value, (*path, key), defined, {}, "outputs")
            if ref:
                keys.append(key)
                refs.append(ref)
        return Outputs("dict", refs, keys, path=path)
