"""The JSON Schema of the spec language, generated from the pydantic models.

``python -m nnspec.spec.make_schema`` rewrites ``schemas/nnspec.schema.json``; a
test fails when the checked-in file differs from what this module generates.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from .editor_schema import add_editor_rules, strip_editor_rules
from .model import SpecModel
from .torch_ops import argument_schemas

__all__ = [
    "SCHEMA_FILE",
    "build_schema",
    "load_schema",
    "schema_text",
    "structural_schema",
]

SCHEMA_FILE = "nnspec.schema.json"
SCHEMA_ID = "https://nnspec.dev/schemas/nnspec.schema.json"


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec document.

    Besides the structure, each torch.nn layer's constructor arguments are listed (a
    conditional per op on the node schema), so an editor completes ``kernel_size``
    and flags ``kernal_size``.
    """
    schema = SpecModel.model_json_schema(by_alias=True, mode="validation")
    node = schema["$defs"]["NodeSpec"]
    common = {key: True for key in node["properties"]}
    node["allOf"] = [
        {
            "if": {"properties": {"op": {"const": op}}, "required": ["op"]},
            "then": {
                "properties": {**common, **args},
                "additionalProperties": False,
            },
        }
        for op, args in argument_schemas().items()
    ]
    # A derived spec (extends) takes its inputs and layers from its base.
    schema["required"] = [
        k for k in schema["required"] if k not in ("inputs", "layers")
    ]
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {"required": ["inputs", "layers"]}
    add_editor_rules(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


@cache
def structural_schema() -> dict[str, Any]:
    """The checked-in schema without what only editors need (per-op argument lists,
    op names, rules on names and expressions: see spec/editor_schema.py).

    The loader validates with this one: the compiler checks those itself, with
    positions and suggestions, and a thousand-node spec validates much faster without
    a conditional per op on every node.
    """
    return strip_editor_rules(load_schema())


def schema_text() -> str:
    """The schema as it is written to disk: sorted keys, two-space indent."""
    return json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"


@cache
def load_schema() -> dict[str, Any]:
    """The checked-in schema, as shipped with the package."""
    text = resources.files("nnspec.schemas").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)
