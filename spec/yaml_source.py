"""YAML text -> plain Python data, with the line and column of every node.

Loading is safe: only the YAML core types are built (strings, numbers, booleans,
null, lists, mappings), never Python objects. Duplicate keys are errors. Aliases
are expanded into plain data, and that expansion is bounded, so a small document
cannot blow up into a huge one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, SpecError

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NODES",
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


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0
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

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(
                node,
                f"the document expands to more than {MAX_NODES} YAML nodes "
                "(aliases are counted at each use); this limit guards against "
                "alias bombs",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels")
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise self.fail(
                    node, f"cannot read this value: {_problem(exc)}"
                ) from None
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and node.tag not in (
            "tag:yaml.org,2002:seq",
            "tag:yaml.org,2002:map",
        ):
            raise self.fail(
                node, f"cannot read this value: unsupported YAML tag {node.tag!r}"
            )
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, (*path, i), depth + 1)
                for i, item in enumerate(node.value)
            ]
        if isinstance(node, yaml.MappingNode):
            return self.build_mapping(node, path, depth)
        raise self.fail(node, "unsupported YAML node")  # pragma: no cover

    def build_mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict:
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
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(
                node, "mapping keys must be plain names, not lists or mappings"
            )
        value = self.constructor.construct_object(node)
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


def parse_yaml(source: str, path: str = "<spec>") -> Document:
    """Load one YAML document with positions. Raises SpecError on any problem."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise SpecError(
            f"the spec is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB",
            path=path,
            line=1,
            column=1,
        )
    doc = Document(path=path, source=source, data=None)
    try:
        node = yaml.compose(source, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = _problem(exc)
        if exc.context and exc.problem:
            message = f"{' '.join(exc.context.split())}: {message}"
        raise SpecError(
            f"YAML syntax: {message}",
            path=path,
            line=line,
            column=column,
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(
            f"YAML: {_problem(exc)}", path=path, line=1, column=1, source=source
        ) from None
    if node is None:
        raise SpecError("the spec is empty", path=path, line=1, column=1, source=source)
    doc.data = _Builder(doc).build(node, (), 0)
    return doc
