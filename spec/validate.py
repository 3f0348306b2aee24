"""Positioned data -> a validated, typed spec.

Two layers: the JSON Schema (the same file editors use) checks the structure and
reports every structural mistake of the document at once; pydantic then builds
the typed models. Every error carries the line and column of the YAML node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

import jsonschema
import pydantic

from .errors import Diagnostic, SpecError, describe_value, suggest
from .model import SpecModel
from .schema import structural_schema
from .yaml_source import Document, Path

__all__ = ["schema_diagnostics", "validate_document"]

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}

_PATTERN_MEANING = {
    r"^[a-z_][a-z0-9_]*$": (
        "a lowercase identifier (lowercase letters, digits and _, not starting with "
        "a digit)"
    ),
    r"^[A-Za-z_][A-Za-z0-9_]*$": (
        "an identifier (letters, digits and _, not starting with a digit)"
    ),
    r"^[A-Z][A-Za-z0-9_]*$": (
        "a CapWords identifier starting with an uppercase letter (e.g. MyNet)"
    ),
}


def _where_words(path: Path) -> str:
    if not path:
        return "the spec"
    parts = [
        f"[{p}]" if isinstance(p, int) else f".{p}" if p.isprintable() else f"[{p!r}]"
        for p in path
    ]
    return "".join(parts).lstrip(".")


def _expected(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = structural_schema().get("$defs", {}).get(name, {})
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if types:
        return " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    if "$ref" in schema:
        return "a mapping"  # every $ref of the schema names a model: a mapping
    return "another value"


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For anyOf/oneOf, the errors of the alternative that fits the value's kind."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    by_branch: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    depth = len(error.absolute_path)
    fitting = [
        subs
        for subs in by_branch.values()
        if not any(
            s.validator == "type" and len(s.absolute_path) == depth for s in subs
        )
    ]
    if len(fitting) == 1:
        return [leaf for sub in fitting[0] for leaf in _leaf_errors(sub)]
    return [error]


def _messages(error: jsonschema.ValidationError, doc: Document) -> list[Diagnostic]:
    path: Path = tuple(error.absolute_path)
    value = error.instance
    where = _where_words(path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        return [
            doc.diagnostic(
                (*path, key),
                f"unknown key {key!r} in {where}{suggest(key, allowed)}; "
                f"known keys: {', '.join(allowed)}",
                key=True,
            )
            for key in value
            if key not in allowed
        ]
    if error.validator == "required":
        # At the key that introduced the mapping ('Mlp:'), where there is one.
        return [
            doc.diagnostic(
                path,
                f"{where} is missing the required key {key!r}",
                key=bool(path) and isinstance(path[-1], str),
            )
            for key in error.validator_value
            if key not in value
        ]
    return [_message(error, doc)]


def _message(error: jsonschema.ValidationError, doc: Document) -> Diagnostic:
    path: Path = tuple(error.absolute_path)
    validator = error.validator
    value = error.instance
    where = _where_words(path)
    if validator == "type":
        return doc.diagnostic(
            path,
            f"{where}: expected {_expected(error.schema)}, received {describe_value(value)}",
        )
    if validator == "pattern":
        meaning = _PATTERN_MEANING.get(error.validator_value, error.validator_value)
        return doc.diagnostic(path, f"{where}: expected {meaning}, received {value!r}")
    if validator in ("const", "enum"):
        return doc.diagnostic(
            path,
            f"{where}: expected {_expected(error.schema)}, received {describe_value(value)}",
        )
    if validator == "minimum":
        return doc.diagnostic(
            path,
            f"{where}: expected at least {error.validator_value}, received {value!r}",
        )
    if validator == "maximum":
        return doc.diagnostic(
            path,
            f"{where}: expected at most {error.validator_value}, received {value!r}",
        )
    if validator in ("exclusiveMinimum", "exclusiveMaximum"):
        side = "more" if validator == "exclusiveMinimum" else "less"
        return doc.diagnostic(
            path,
            f"{where}: expected {side} than {error.validator_value}, "
            f"received {value!r}",
        )
    if validator in ("minItems", "minProperties"):
        return doc.diagnostic(path, f"{where}: must not be empty")
    if validator == "minLength":
        return doc.diagnostic(path, f"{where}: must not be empty")
    if validator in ("anyOf", "oneOf"):
        options = [_expected(s) for s in error.validator_value]
        return doc.diagnostic(
            path,
            f"{where}: expected {' or '.join(options)}, received {describe_value(value)}",
        )
    return doc.diagnostic(path, f"{where}: {error.message}")


@cache
def _python_pattern(pattern: str) -> re.Pattern[str]:
    """A schema pattern as Python reads it: ``$`` at the end is the end of the text, as
    in JSON Schema's ECMA-262 (Python's ``$`` also matches before a final newline)."""
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _python_pattern(pattern).search(
        instance
    ):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _validator(schema: dict[str, Any]) -> Any:
    """The schema's validator, with patterns read as JSON Schema means them."""
    base = jsonschema.validators.validator_for(schema)
    return jsonschema.validators.extend(base, {"pattern": _pattern})(schema)


def schema_diagnostics(
    doc: Document, schema: dict[str, Any] | None = None
) -> list[Diagnostic]:
    """Every structural mistake in the document, in document order."""
    schema = schema or structural_schema()
    validator = _validator(schema)
    diags: dict[tuple[int, int, str], Diagnostic] = {}
    for error in validator.iter_errors(doc.data):
        for leaf in _leaf_errors(error):
            for diag in _messages(leaf, doc):
                diags.setdefault((diag.line, diag.column, diag.message), diag)
    return sorted(diags.values(), key=lambda d: (d.line, d.column))


def _pydantic_diagnostics(
    exc: pydantic.ValidationError, doc: Document
) -> Iterable[Diagnostic]:
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        # pydantic names union members in loc ('str', 'NodeSpec'); keep real keys only.
        path: list[str | int] = []
        node: Any = doc.data
        for part in loc:
            if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and part < len(node)
            ):
                path.append(part)
                node = node[part]  # type: ignore[index]
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch":  # a key: the schema has no rule
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            meaning = _PATTERN_MEANING.get(pattern, pattern)
            message = f"expected {meaning}, received {err['input']!r}"
        yield doc.diagnostic(tuple(path), f"{_where_words(tuple(path))}: {message}")


def _identity(value: Any) -> Any:
    """A hashable stand-in for plain data, equal only for data of the same types."""
    if isinstance(value, dict):
        return (dict, tuple((k, _identity(v)) for k, v in value.items()))
    if isinstance(value, list):
        return (list, tuple(_identity(v) for v in value))
    return (type(value), value)


def _distinct_layers(layers: Any) -> Any:
    if not isinstance(layers, list):
        return layers
    seen: dict[Any, Any] = {}
    for node in layers:
        seen.setdefault(_identity(node), node)
    return list(seen.values())


def _distinct_nodes(data: dict[str, Any]) -> dict[str, Any]:
    """The document with each ``layers`` list cut to its distinct nodes.

    The schema checks a layers list node by node, and only its length besides (at
    least one), so this copy is valid exactly when the document is: a chain of a
    thousand identical layers is checked as one.
    """
    distinct = dict(data)
    distinct["layers"] = _distinct_layers(data.get("layers"))
    blocks = data.get("blocks")
    if isinstance(blocks, dict):
        distinct["blocks"] = {
            name: (
                {**block, "layers": _distinct_layers(block.get("layers"))}
                if isinstance(block, dict) and "layers" in block
                else block
            )
            for name, block in blocks.items()
        }
    if "layers" not in data:
        del distinct["layers"]
    return distinct


def validate_document(doc: Document) -> SpecModel:
    """Check the document against the schema, then build the typed spec."""
    if not isinstance(doc.data, dict):
        raise doc.error(
            (), f"a spec is a mapping of keys, received {describe_value(doc.data)}"
        )
    schema = structural_schema()
    validator = _validator(schema)
    if not validator.is_valid(_distinct_nodes(doc.data)):
        # Only now the whole document: every mistake, at its own position.
        raise SpecError(diagnostics=schema_diagnostics(doc, schema), source=doc.source)
    try:
        return SpecModel.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        raise SpecError(
            diagnostics=list(_pydantic_diagnostics(exc, doc)), source=doc.source
        ) from None
