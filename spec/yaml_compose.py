"""YAML events -> a document's nodes, within the size limits of a spec.

The limits are checked as the events arrive, before anything is built: the bytes of
the text, the nodes of the document with aliases expanded (an alias counts the nodes
it repeats, at each use), and the depth of nesting; no recursion is used, so no
depth of brackets can exhaust the stack. Only the YAML core tags are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from .errors import SpecError, suggest

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NODES",
    "Budget",
    "Composer",
    "SpecLoader",
    "short_tag",
]

#: Largest spec text accepted, in bytes.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
#: Most YAML nodes a document may expand to, aliases counted each time they are used.
MAX_NODES = 500_000
#: Deepest nesting of lists and mappings.
MAX_DEPTH = 64


@dataclass
class Budget:
    """What is left of the size limits for one spec: the file given and every file
    its ``extends`` chain reads share one budget, so a chain of files can do no more
    than one file could."""

    bytes: int = MAX_DOCUMENT_BYTES
    nodes: int = MAX_NODES
    #: Files read so far.
    files: int = 0

    def whole(self, limit: str) -> str:
        """How a message names what crossed a limit."""
        if self.files == 0:
            return f"the document {limit}"
        return f"this file and the {self.files} that extend it {limit} together"


class SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, reading ``1e-3`` as a number as YAML 1.2 does (YAML 1.1,
    PyYAML's default, reads a float without a dot as a string)."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge")
)
_STR_TAG = "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


@dataclass
class _Open:
    """A list or mapping being composed: its node, anchor, and size so far."""

    node: yaml.SequenceNode | yaml.MappingNode
    anchor: str | None
    size: int = 1
    height: int = 1
    key: yaml.Node | None = None


class Composer:
    """YAML events -> one document's node graph, without recursion.

    Checks, as the events arrive, that nesting stays within MAX_DEPTH and that the
    document, aliases expanded, stays within MAX_NODES: an alias counts as many nodes
    as it repeats, at each use, so an alias bomb fails at the alias that crosses the
    limit, before anything is expanded.
    """

    def __init__(self, source: str, path: str, budget: Budget) -> None:
        self.source = source
        self.path = path
        self.budget = budget
        self.limit = budget.nodes
        self.loader = SpecLoader(source)
        # anchor -> (node, expanded size, height)
        self.anchors: dict[str, tuple[yaml.Node, int, int]] = {}
        self.open_anchors: dict[str, yaml.Mark] = {}
        self.total = 0

    def fail(self, mark: yaml.Mark, message: str) -> SpecError:
        return SpecError(
            message,
            path=self.path,
            line=mark.line + 1,
            column=mark.column + 1,
            source=self.source,
        )

    def compose(self) -> yaml.Node | None:
        try:
            self.loader.get_event()  # stream start
            if self.loader.check_event(yaml.StreamEndEvent):
                return None
            self.loader.get_event()  # document start
            root = self.root()
            self.loader.get_event()  # document end
            if not self.loader.check_event(yaml.StreamEndEvent):
                event = self.loader.get_event()
                raise self.fail(
                    event.start_mark,
                    "a spec is one YAML document; another one starts here",
                )
            return root
        finally:
            self.loader.dispose()

    def count(self, size: int, mark: yaml.Mark, alias: str | None = None) -> None:
        self.total += size
        if self.total <= self.limit:
            return
        if alias is not None:
            brings = (
                "the document"
                if self.budget.files == 0
                else f"this file and the {self.budget.files} that extend it"
            )
            raise self.fail(
                mark,
                f"the alias *{alias} brings {brings} to more than {MAX_NODES} "
                f"YAML nodes (it repeats {size} nodes; aliases count at each use); "
                "this limit guards against alias bombs",
            )
        raise self.fail(
            mark, self.budget.whole(f"have more than {MAX_NODES} YAML nodes")
        )

    def tag(self, event: yaml.NodeEvent, kind: type, value: str | None) -> str:
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            tag = self.loader.resolve(kind, value, event.implicit)  # type: ignore[attr-defined]
            if tag == _TIMESTAMP_TAG:
                # A date written plainly is text: a spec has no date values.
                return _STR_TAG
        if tag not in _PLAIN_TAGS:
            raise self.fail(
                event.start_mark,
                f"the tag {short_tag(tag)!r} is not allowed: a spec holds plain YAML "
                "data only (strings, numbers, booleans, null, lists, mappings; the "
                "tags !!str, !!int, !!float, !!bool, !!null, !!seq and !!map)",
            )
        return tag

    def root(self) -> yaml.Node:
        stack: list[_Open] = []
        while True:
            event = self.loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                node, size, height = self.alias(event, len(stack))
            elif isinstance(event, yaml.ScalarEvent):
                self.count(1, event.start_mark)
                node = yaml.ScalarNode(
                    self.tag(event, yaml.ScalarNode, event.value),
                    event.value,
                    event.start_mark,
                    event.end_mark,
                    style=event.style,
                )
                size, height = 1, 0
                if event.anchor:
                    self.anchors[event.anchor] = (node, 1, 0)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(
                        event.start_mark, f"nesting deeper than {MAX_DEPTH} levels"
                    )
                self.count(1, event.start_mark)
                kind = (
                    yaml.SequenceNode
                    if isinstance(event, yaml.SequenceStartEvent)
                    else yaml.MappingNode
                )
                collection = kind(
                    self.tag(event, kind, None),
                    [],
                    event.start_mark,
                    event.end_mark,
                    flow_style=event.flow_style,
                )
                stack.append(_Open(collection, event.anchor))
                if event.anchor:
                    self.open_anchors[event.anchor] = event.start_mark
                continue
            else:  # the end of a list or mapping
                done = stack.pop()
                done.node.end_mark = event.end_mark
                node, size, height = done.node, done.size, done.height
                if done.anchor:
                    self.open_anchors.pop(done.anchor, None)
                    self.anchors[done.anchor] = (node, size, height)
            if not stack:
                return node
            parent = stack[-1]
            parent.size += size
            parent.height = max(parent.height, height + 1)
            if isinstance(parent.node, yaml.SequenceNode):
                parent.node.value.append(node)
            elif parent.key is None:
                parent.key = node
            else:
                parent.node.value.append((parent.key, node))
                parent.key = None

    def alias(self, event: yaml.AliasEvent, depth: int) -> tuple[yaml.Node, int, int]:
        name = event.anchor
        if name in self.open_anchors:
            line = self.open_anchors[name].line + 1
            raise self.fail(
                event.start_mark,
                f"the alias *{name} is used inside the node it names (&{name}, line "
                f"{line}); YAML data in a spec cannot contain itself",
            )
        if name not in self.anchors:
            raise self.fail(
                event.start_mark,
                f"the alias *{name} names no anchor; define it first with &{name}"
                + suggest(name, list(self.anchors)),
            )
        node, size, height = self.anchors[name]
        if depth + height > MAX_DEPTH:
            raise self.fail(
                event.start_mark,
                f"nesting deeper than {MAX_DEPTH} levels (through the alias *{name})",
            )
        self.count(size, event.start_mark, alias=name)
        return node, size, height
