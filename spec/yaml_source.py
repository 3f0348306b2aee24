"""YAML text -> plain Python data, with the line and column of every node.

Loading is safe: only the YAML core types are built (strings, numbers, booleans,
null, lists, mappings), never Python objects. Duplicate keys are errors. Aliases
are expanded into plain data, and that expansion is bounded, so a small document
cannot blow up into a huge one; nesting is bounded too, and checked as the text is
read, so no depth of brackets can exhaust the stack (yaml_compose.py); a syntax
error is said in the spec's terms (yaml_errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .collector import paused_gc
from .errors import Diagnostic, SpecError
from .yaml_compose import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    Budget,
    Composer,
    SpecLoader,
    short_tag,
)
from .yaml_errors import problem_text, syntax_error

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


def parse_value(text: str) -> Any:
    """One YAML value read as a spec reads it (for command-line overrides)."""
    return yaml.load(text, Loader=SpecLoader)  # a safe loader: plain data only


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
            raise self.fail(
                node, f"cannot read this value: {problem_text(exc)}"
            ) from None
        except (ValueError, KeyError, TypeError, OverflowError):
            expected = _TAG_VALUES.get(node.tag, "a plain value")
            raise self.fail(
                node,
                f"{node.value[:40]!r} is not {expected}, as its tag "
                f"{short_tag(node.tag)} says it must be",
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
            raise self.fail(node, f"bad merge key: {problem_text(exc)}") from None
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
    composer = Composer(source, path, budget)
    try:
        node = composer.compose()
    except yaml.MarkedYAMLError as exc:
        raise syntax_error(exc, source, path) from None
    except yaml.YAMLError as exc:
        line, column = 1, 1
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            before = source[:position]
            line = before.count("\n") + 1
            column = position - (before.rfind("\n") + 1) + 1
        raise SpecError(
            f"YAML: {problem_text(exc)}",
            path=path,
            line=line,
            column=column,
            source=source,
        ) from None
    if node is None:
        raise SpecError("the spec is empty", path=path, line=1, column=1, source=source)
    budget.nodes -= composer.total
    doc.data = _Builder(doc).build(node, ())
    return doc
