"""YAML text -> plain Python data, with the line and column of every node.

Loading is safe: only the YAML core types are built (strings, numbers, booleans,
null, lists, mappings), never Python objects. Duplicate keys are errors. Aliases
are expanded into plain data, and that expansion is bounded, so a small document
cannot blow up into a huge one; nesting is bounded too, and checked as the text is
read, so no depth of brackets can exhaust the stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .collector import paused_gc
from .errors import Diagnostic, SpecError, suggest

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "Budget",
    "Document",
    "Path",
    "parse_value",
    "parse_yaml",
]

Path = tuple[str | int, ...]

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


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, reading ``1e-3`` as a number as YAML 1.2 does (YAML 1.1,
    PyYAML's default, reads a float without a dot as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str) -> Any:
    """One YAML value read as a spec reads it (for command-line overrides)."""
    return yaml.load(text, Loader=_Loader)  # a safe loader: plain data only


@dataclass
class Document:
    """Data loaded from YAML, and where each part of it was written.

    ``marks`` maps the path of a value (keys and list indices from the root) to
    its (line, column); ``key_marks`` maps the same path to the position of the
    mapping key that introduced it. Both count from 1.
    """

    path: str
    source: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    #: For documents merged from several files (``extends``): the file each part came
    #: from, by the path of that part; the nearest enclosing entry applies.
    origins: dict[Path, tuple[str, str]] = field(default_factory=dict)
    #: The size limits left for the files this document reads (its extends chain).
    budget: Budget = field(default_factory=Budget, compare=False, repr=False)

    def origin(self, path: Path) -> tuple[str, str]:
        """(file path, file text) of the part at ``path``."""
        path = tuple(path)
        while True:
            if path in self.origins:
                return self.origins[path]
            if not path:
                return self.path, self.source
            path = path[:-1]

    def location(self, path: Path) -> tuple[str, int]:
        """(file path, line) of the part at ``path``."""
        return self.origin(path)[0], self.where(path)[0]

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path`` (of its key with ``key=True``), else its nearest ancestor's."""
        path = tuple(path)
        if key and path in self.key_marks:
            return self.key_marks[path]
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (1, 1))

    def diagnostic(self, path: Path, message: str, *, key: bool = False) -> Diagnostic:
        line, column = self.where(path, key=key)
        if not self.origins:
            return Diagnostic(self.path, line, column, message)
        file, text = self.origin(path)
        return Diagnostic(
            file, line, column, message, text if file != self.path else None
        )

    def error(self, path: Path, message: str, *, key: bool = False) -> SpecError:
        return SpecError(
            diagnostics=[self.diagnostic(path, message, key=key)], source=self.source
        )


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge")
)
_STR_TAG = "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
#: What a value written with each explicit tag must look like.
_TAG_VALUES = {
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:null": "null or ~",
}
#: Longest integer a spec may write, in decimal digits (Python's own limit on
#: converting text to int, which otherwise ends in a ValueError).
MAX_INT_DIGITS = 4300


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


@dataclass
class _Open:
    """A list or mapping being composed: its node, anchor, and size so far."""

    node: yaml.SequenceNode | yaml.MappingNode
    anchor: str | None
    size: int = 1
    height: int = 1
    key: yaml.Node | None = None


class _Composer:
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
        self.loader = _Loader(source)
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
                f"the tag {_short_tag(tag)!r} is not allowed: a spec holds plain YAML "
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


class _Builder:
    """Composed nodes -> plain data, recording the position of every value and key.

    The composer has bounded depth and size, so plain recursion is safe here.
    """

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        mark = node.start_mark
        return SpecError(
            message,
            path=self.doc.path,
            line=mark.line + 1,
            column=mark.column + 1,
            source=self.doc.source,
        )

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.build_mapping(node, path)

    def scalar(self, node: yaml.ScalarNode) -> Any:
        """A scalar's value; one its tag cannot read is an error at the scalar."""
        if node.tag == "tag:yaml.org,2002:int":
            digits = len(node.value.lstrip("+-").replace("_", ""))
            if digits > MAX_INT_DIGITS:
                raise self.fail(
                    node,
                    f"an integer of {digits} digits; integers in a spec have at most "
                    f"{MAX_INT_DIGITS} digits",
                )
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(node, f"cannot read this value: {_problem(exc)}") from None
        except (ValueError, KeyError, TypeError, OverflowError):
            expected = _TAG_VALUES.get(node.tag, "a plain value")
            raise self.fail(
                node,
                f"{node.value[:40]!r} is not {expected}, as its tag "
                f"{_short_tag(node.tag)} says it must be",
            ) from None

    def build_mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.key(key_node)
            if key in seen:
                first = seen[key].start_mark
                raise self.fail(
                    key_node,
                    f"duplicate key {key!r} (first given at line {first.line + 1})",
                )
            seen[key] = key_node
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as exc:
            raise self.fail(node, f"bad merge key: {_problem(exc)}") from None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            child = (*path, key)
            self.doc.key_marks[child] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            result[key] = self.build(value_node, child)
        return result

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(
                node, "mapping keys must be plain names, not lists or mappings"
            )
        value = self.scalar(node)
        if not isinstance(value, str):
            raise self.fail(
                node,
                f"mapping key {node.value!r} is read as {type(value).__name__}, "
                "not a name; put it in quotes",
            )
        return value


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    return " ".join(str(problem).split())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _next_content_line(lines: list[str], after: int) -> int | None:
    """The index of the first line after ``after`` holding more than a comment."""
    for i in range(after + 1, len(lines)):
        text = lines[i].strip()
        if text and not text.startswith("#"):
            return i
    return None


def _at(mark: yaml.Mark, column: int) -> yaml.Mark:
    """The same line as ``mark``, another column."""
    return yaml.Mark(
        mark.name, mark.index - mark.column + column, mark.line, column, None, None
    )


_FLOW = {
    "while parsing a flow mapping": ("{", "}"),
    "while parsing a flow sequence": ("[", "]"),
}


def _syntax_error(exc: yaml.MarkedYAMLError, source: str, path: str) -> SpecError:
    """A YAML syntax error, said in the spec's terms and placed where the fix goes."""
    context = " ".join((exc.context or "").split())
    problem = _problem(exc)
    opened, mark = exc.context_mark, exc.problem_mark or exc.context_mark
    lines = source.splitlines()
    message = f"{context}: {problem}" if context and exc.problem else problem
    if context in _FLOW and opened is not None and mark is not None:
        left, right = _FLOW[context]
        following = _next_content_line(lines, opened.line)
        # A collection that runs past its line into text indented no deeper was
        # meant to close on its line: point at the bracket that opened it.
        if mark.line != opened.line and (
            following is None
            or _indent(lines[following]) <= _indent(lines[opened.line])
        ):
            where = "the end" if following is None else f"line {following + 1}"
            message = f"this {left!r} is not closed: expected {right!r} before {where}"
            mark = opened
        else:
            message = (
                f"expected ',' or {right!r} here, inside the {left!r} opened at "
                f"line {opened.line + 1}, column {opened.column + 1}"
            )
            # 'a: 1\n b: 2' reads as the value '1 b' and fails at the second ':'; the
            # comma belongs before the key that starts this line.
            text = lines[mark.line][: mark.column] if mark.line < len(lines) else ""
            key = text.strip()
            if mark.line != opened.line and re.fullmatch(r"[\w.-]+", key):
                message = (
                    f"expected ',' or {right!r} before {key!r}: is a comma missing at "
                    f"the end of line {mark.line}?"
                )
                mark = _at(mark, mark.column - len(text.lstrip()))
    elif context.startswith("while scanning a quoted scalar") and (
        "end of stream" in problem
    ):
        message = "this quote is not closed before the end of the document"
        mark = opened
    elif "cannot start any token" in problem and mark is not None:
        char = source[mark.index] if mark.index < len(source) else ""
        message = (
            "a tab cannot indent YAML; indent with spaces"
            if char == "\t"
            else f"{char!r} cannot start a YAML value; put the value in quotes"
        )
    elif problem == "did not find expected key" and opened is not None:
        message = (
            f"expected a key at column {opened.column + 1}, like the mapping that "
            f"starts at line {opened.line + 1}; check the indentation"
        )
    elif "expected '-' indicator" in problem and opened is not None:
        message = (
            f"expected a '-' item at column {opened.column + 1}, like the list that "
            f"starts at line {opened.line + 1}; check the indentation"
        )
    elif problem.startswith("mapping values are not allowed"):
        message = (
            "a ':' followed by a space cannot appear here; put the value in quotes "
            "if it contains ': ', or check the indentation"
        )
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return SpecError(
        f"YAML syntax: {message}", path=path, line=line, column=column, source=source
    )


def parse_yaml(
    source: str, path: str = "<spec>", budget: Budget | None = None
) -> Document:
    """Load one YAML document with positions. Raises SpecError on any problem.

    ``budget`` is what is left of the limits when this document is a base of another
    (the extends chain shares one); it is reduced by what this document uses.
    """
    budget = Budget() if budget is None else budget
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > budget.bytes:
        mib = MAX_DOCUMENT_BYTES // (1024 * 1024)
        raise SpecError(
            f"the spec is larger than {mib} MiB"
            if budget.files == 0
            else budget.whole(f"are larger than {mib} MiB"),
            path=path,
            line=1,
            column=1,
        )
    doc = Document(path=path, source=source, data=None, budget=budget)
    with paused_gc():
        _load(doc, budget)
    budget.bytes -= size
    budget.files += 1
    return doc


def _load(doc: Document, budget: Budget) -> Document:
    source, path = doc.source, doc.path
    composer = _Composer(source, path, budget)
    try:
        node = composer.compose()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source, path) from None
    except yaml.YAMLError as exc:
        line, column = 1, 1
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            before = source[:position]
            line = before.count("\n") + 1
            column = position - (before.rfind("\n") + 1) + 1
        raise SpecError(
            f"YAML: {_problem(exc)}", path=path, line=line, column=column, source=source
        ) from None
    if node is None:
        raise SpecError("the spec is empty", path=path, line=1, column=1, source=source)
    budget.nodes -= composer.total
    doc.data = _Builder(doc).build(node, ())
    return doc
