"""What the JSON Schema tells an editor beyond the document's structure.

The loader checks structure with the schema and leaves the rest to the compiler, which
says more (positions, suggestions, shapes). An editor has only the schema, so the
checked-in file also carries, under keys the loader strips (``allOf`` conditionals and
``$defs`` named ``Editor...``):

- every op name a spec may use, each with the first line of torch's docstring, so the
  editor completes ``op:`` values and shows what an op does;
- each torch.nn layer's and tensor function's keyword arguments (``kernal_size`` is
  flagged), the arguments nnspec cannot infer as required, and how many ``args`` an op
  takes; the input names of layers whose forward takes several (``in: {input1: x}``);
- the rules on names and expressions that need no graph: Python keywords and builtins
  as names, references' form, ``${`` without ``}``, dunders, attributes other than
  ``.shape``, the batch dimension, a division by zero, ``use`` nodes with arguments, a
  node with both or neither of ``op`` and ``use``, unknown initialisers.

Op names are checked where the schema can know them: in a document that defines no
blocks and extends no base, every op is a torch op or ``package.module:Class``.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
from typing import Any

import torch.nn as nn

from .torch_ops import (
    INFERRED_ARGS,
    constructor_signature,
    function_names,
    module_classes,
    parameter_names,
    signature_of,
)

__all__ = ["EDITOR_PREFIX", "add_editor_rules", "op_descriptions"]

EDITOR_PREFIX = "Editor"

# Standard-library packages that hold no layers: a custom op from one is a mistake.
_NOT_LAYER_PACKAGES = (
    "os|sys|subprocess|shutil|builtins|importlib|pickle|marshal|socket|pathlib|io|"
    "ctypes|runpy|code|codecs|types|inspect|multiprocessing|threading|signal|"
    "tempfile|glob|json|re|math|random|time|functools|itertools|operator"
)
CUSTOM_OP = (
    rf"^(?!({_NOT_LAYER_PACKAGES})[.:])"
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
BLOCK_NAME = r"^[A-Z][A-Za-z0-9_]*$"
REFERENCE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[0-9]+)*$"
# Every ${ is closed by a }.
_CLOSED = r"^([^$]|\$(?!\{)|\$\{[^}]*\})*$"
# What an expression may not hold: a dunder, a lambda, a call of open, an attribute
# other than .shape (a letter after a dot that does not follow a digit), the batch
# dimension, a division by a literal zero, a dangling operator, a power over the
# interpreter's limit.
_FORBIDDEN = (
    r"\$\{[^}]*?("
    r"__"
    r"|\blambda\b"
    r"|\bopen\s*\("
    r"|[A-Za-z_\])]\.(?!shape\b)[A-Za-z_]"
    r"|\.shape\[\s*0\s*\]"
    r"|/\s*0+(?![0-9.])"
    r"|[-+*/%<>=&|^]\s*\}"  # an operator with nothing after it
    r"|\*\*\s*[0-9]+\s*\*\*"  # a tower of powers
    r"|\*\*\s*([0-9]{4,}|[3-9][0-9]{2}|2[6-9][0-9]|25[7-9])"  # an exponent over 256
    r")"
)
# Names that generated code cannot use for an input, a parameter or a node.
_RESERVED = sorted(
    {
        *keyword.kwlist,
        *keyword.softkwlist,
        *(n for n in dir(builtins) if not n.startswith("__")),
        *("self", "torch", "nn", "F", "super"),
    }
)
_MODULE_ATTRIBUTES = sorted(
    {name for name in dir(nn.Module) if not name.startswith("__")} | {"training"}
)
_INITIALISERS = sorted(
    name[:-1]
    for name in dir(nn.init)
    if name.endswith("_")
    and not name.startswith("_")
    and callable(getattr(nn.init, name))
)


def _first_line(doc: str | None, name: str) -> str:
    """The first sentence of a docstring, past the call forms torch's builtins open with."""
    lines: list[str] = []
    for raw in (doc or "").splitlines():
        line = raw.strip()
        if not line:
            if lines:
                break
            continue
        if re.match(
            rf"(\.\. function:: )?{re.escape(name)}\(", line
        ) or line.startswith((".. ", ":")):
            continue
        lines.append(line)
    text = " ".join(lines)
    text = re.sub(r":(class|func|meth|attr|math|ref):`~?([^`]*)`", r"\2", text)
    text = text.replace("``", "`")
    end = re.search(r"(?<=[a-z0-9)`])\.(\s|$)", text)
    return (text[: end.start() + 1] if end else text)[:300]


def op_descriptions() -> dict[str, tuple[str, str]]:
    """op name -> (what it is, its first docstring line), for every torch op a spec
    may name: torch.nn layers first, then tensor functions."""
    ops: dict[str, tuple[str, str]] = {}
    for name, cls in sorted(module_classes().items()):
        ops[name] = (f"torch.nn.{name}", _first_line(cls.__doc__, name))
    for name, (function, code) in sorted(function_names().items()):
        spelled = code.replace("F.", "torch.nn.functional.")
        ops.setdefault(name, (spelled, _first_line(function.__doc__, name)))
    return ops


def _op_names() -> dict[str, Any]:
    # No description of its own: an editor's hover then shows the matching op's.
    return {
        "anyOf": [
            {
                "const": name,
                "description": f"{spelled}: {line}" if line else spelled,
                "markdownDescription": f"`{spelled}`" + (f": {line}" if line else ""),
            }
            for name, (spelled, line) in op_descriptions().items()
        ],
    }


def _expression() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": r"\$\{",
        "allOf": [{"pattern": _CLOSED}, {"not": {"pattern": _FORBIDDEN}}],
        "description": "An expression: ${...} over params, block params, i and the "
        "shapes of earlier nodes (x.shape[1]).",
    }


def _function_arguments() -> dict[str, list[str]]:
    """function name -> its parameter names, where Python or the docstring tells."""
    found: dict[str, list[str]] = {}
    for name, (function, _) in function_names().items():
        signature = signature_of(function)
        if signature is not None and any(
            p.kind is p.VAR_KEYWORD for p in signature.parameters.values()
        ):
            continue
        names = parameter_names(function)
        if names:
            found[name] = names
    return found


def _positional_count(cls: type) -> int | None:
    """How many ``args`` an op takes; None when it takes any number (``*args``)."""
    signature = constructor_signature(cls)
    if signature is None or any(
        p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()
    ):
        return None
    return len(_positional_names(cls))


def _positional_names(cls: type) -> list[str]:
    """What ``args`` fill, in order: the positional parameters nnspec does not infer."""
    signature = constructor_signature(cls)
    if signature is None:
        return []
    inferred = {arg for arg, _ in INFERRED_ARGS.get(cls.__name__, ())}
    names = []
    for p in signature.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            break
        if (
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in inferred
        ):
            names.append(p.name)
    return names


def _required(cls: type) -> list[str]:
    signature = constructor_signature(cls)
    if signature is None:
        return []
    inferred = {arg for arg, _ in INFERRED_ARGS.get(cls.__name__, ())}
    return [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in inferred
    ]


def _forward_inputs(cls: type) -> list[str] | None:
    try:
        forward = cls.forward  # type: ignore[attr-defined]
        params = list(inspect.signature(forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
        return None
    return [p.name for p in params]


def _node_rules(common: list[str]) -> list[dict[str, Any]]:
    """Conditionals on a node: per op, and on op/use."""
    ref = {"type": "string", "pattern": REFERENCE}
    rules: list[dict[str, Any]] = [
        # A node is a call of an op or of an earlier node's module, never both;
        # or a seq (an nn.Sequential of the nodes listed).
        {"not": {"required": ["op", "use"]}},
        {"not": {"required": ["op", "seq"]}},
        {"not": {"required": ["use", "seq"]}},
        {"anyOf": [{"required": ["op"]}, {"required": ["use"]}, {"required": ["seq"]}]},
        {
            "if": {"required": ["use"]},
            "then": {"propertyNames": {"enum": ["use", "name", "in"]}},
        },
        {
            "properties": {
                "op": {
                    "anyOf": [
                        {"$ref": f"#/$defs/{EDITOR_PREFIX}OpName"},
                        {
                            "type": "string",
                            "pattern": CUSTOM_OP,
                            "description": "A custom op, package.module:Class (the "
                            "package must be allowed: --allow-import).",
                        },
                        {
                            "type": "string",
                            "pattern": BLOCK_NAME,
                            "description": "A block of this spec (or its base).",
                        },
                    ]
                },
                "name": {"not": {"anyOf": [{"enum": _RESERVED}, {"pattern": "^__"}]}},
                "use": ref,
                "in": {
                    "anyOf": [
                        ref,
                        {"type": "array", "items": ref},
                        {"type": "object", "additionalProperties": ref},
                    ]
                },
                "repeat": {
                    "anyOf": [
                        {"type": "integer", "minimum": 1, "maximum": 10_000},
                        {
                            "allOf": [
                                {"$ref": f"#/$defs/{EDITOR_PREFIX}Expression"},
                                # true division gives a float: a count needs //
                                {"not": {"pattern": r"(?<!/)/(?!/)"}},
                            ]
                        },
                    ]
                },
            }
        },
    ]
    # A module's (or block's) node name is an attribute of the generated class.
    rules.append(
        {
            "if": {
                "properties": {"op": {"type": "string", "pattern": "^[A-Z]"}},
                "required": ["op", "name"],
            },
            "then": {"properties": {"name": {"not": {"enum": _MODULE_ATTRIBUTES}}}},
        }
    )
    described = op_descriptions()

    def about(op: str) -> dict[str, Any]:
        """What an editor shows on hover over this op's name."""
        spelled, line = described[op]
        return {
            "title": op,
            "description": f"{spelled}: {line}" if line else spelled,
            "markdownDescription": f"`{spelled}`" + (f": {line}" if line else ""),
        }

    for name, cls in sorted(module_classes().items()):
        then: dict[str, Any] = {}
        required = _required(cls)
        if required:
            then["if"] = {"required": ["args"]}
            then["else"] = {"required": required}
        count = _positional_count(cls)
        inputs = _forward_inputs(cls)
        properties: dict[str, Any] = {"op": about(name)}
        if count is not None:
            properties["args"] = {"type": "array", "maxItems": count}
        if inputs:
            properties["in"] = {
                "anyOf": [
                    ref,
                    {"type": "array", "items": ref, "maxItems": len(inputs)},
                    {
                        "type": "object",
                        "propertyNames": {"enum": inputs},
                        "additionalProperties": ref,
                    },
                ]
            }
        then["properties"] = properties
        # A value given by position is not given again by name.
        given_twice = [
            {
                "if": {
                    "properties": {"args": {"minItems": k + 1}},
                    "required": ["args"],
                },
                "then": {"not": {"required": [arg]}},
            }
            for k, arg in enumerate(_positional_names(cls))
        ]
        if given_twice:
            then["allOf"] = given_twice
        rules.append(
            {
                "if": {"properties": {"op": {"const": name}}, "required": ["op"]},
                "then": then,
            }
        )
    for name, params in sorted(_function_arguments().items()):
        rules.append(
            {
                "if": {"properties": {"op": {"const": name}}, "required": ["op"]},
                "then": {
                    "properties": {
                        **{key: True for key in common},
                        **dict.fromkeys(params, True),
                        "op": about(name),
                    },
                    "additionalProperties": False,
                },
            }
        )
    return rules


def _known_op() -> dict[str, Any]:
    return {
        "anyOf": [
            {"$ref": f"#/$defs/{EDITOR_PREFIX}OpName"},
            {"type": "string", "pattern": CUSTOM_OP},
        ]
    }


def add_editor_rules(schema: dict[str, Any]) -> None:
    """Add the editor's rules to a schema made from the pydantic models (in place)."""
    defs = schema["$defs"]
    defs[f"{EDITOR_PREFIX}OpName"] = _op_names()
    defs[f"{EDITOR_PREFIX}Expression"] = _expression()
    node = defs["NodeSpec"]
    common = list(node["properties"])
    node.setdefault("allOf", []).extend(_node_rules(common))
    not_reserved = {"not": {"anyOf": [{"enum": _RESERVED}, {"pattern": "^__"}]}}
    defs["BlockSpec"]["allOf"] = [
        {
            "properties": {
                "params": {"propertyNames": not_reserved},
                "inputs": {"items": not_reserved},
                "outputs": {},  # set below: one reference or a list, not a mapping
            }
        }
    ]
    initialiser = {"enum": _INITIALISERS}
    defs["InitRule"]["allOf"] = [
        {
            "properties": {"match": True},
            "additionalProperties": {
                "anyOf": [
                    initialiser,
                    {
                        "type": "object",
                        "minProperties": 1,
                        "maxProperties": 1,
                        "propertyNames": initialiser,
                    },
                ],
                "description": "An initialiser of torch.nn.init without its trailing "
                "underscore, or {initialiser: arguments}.",
            },
        }
    ]
    layer_item = {
        "anyOf": [
            _known_op(),
            {
                "type": "object",
                "properties": {"op": {"anyOf": [_known_op(), {"type": "null"}]}},
            },
        ]
    }
    _describe_nodes(schema)
    ref = {"type": "string", "pattern": REFERENCE}
    refs = {
        "anyOf": [
            ref,
            {"type": "array", "items": ref},
            {"type": "object", "additionalProperties": ref},
        ]
    }
    defs["BlockSpec"]["allOf"][0]["properties"]["outputs"] = {
        "anyOf": [ref, {"type": "array", "items": ref}]
    }
    schema.setdefault("allOf", []).extend(
        [
            {
                "properties": {
                    "outputs": refs,
                    "freeze": {"items": {"type": "string", "minLength": 1}},
                    "inputs": {"propertyNames": not_reserved},
                    "blocks": {
                        "propertyNames": {"not": {"enum": sorted(module_classes())}}
                    },
                    "params": {"propertyNames": not_reserved},
                }
            },
            # Without blocks or a base, every op of the graph is a torch op or a custom one.
            {
                "if": {
                    "not": {
                        "anyOf": [{"required": ["blocks"]}, {"required": ["extends"]}]
                    }
                },
                "then": {"properties": {"layers": {"items": layer_item}}},
            },
        ]
    )


_NODE_TEXT = (
    "A node: a bare op name (ReLU), or a mapping with op (or use), name, in and the "
    "op's arguments."
)


def _describe_nodes(value: Any) -> None:
    """Give each "op name or node mapping" union a description, so an editor's hover
    says what a node is rather than listing the union's branches."""
    if isinstance(value, dict):
        options = value.get("anyOf")
        if (
            isinstance(options, list)
            and {"$ref": "#/$defs/NodeSpec"} in options
            and "description" not in value
        ):
            value["description"] = _NODE_TEXT
        for item in value.values():
            _describe_nodes(item)
    elif isinstance(value, list):
        for item in value:
            _describe_nodes(item)


def strip_editor_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without what ``add_editor_rules`` added: the loader's schema. Shares
    the untouched parts with ``schema`` (nothing is copied deeply)."""
    stripped = {key: value for key, value in schema.items() if key != "allOf"}
    stripped["$defs"] = {
        name: {key: value for key, value in definition.items() if key != "allOf"}
        for name, definition in schema.get("$defs", {}).items()
        if not name.startswith(EDITOR_PREFIX)
    }
    return stripped
