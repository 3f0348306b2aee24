"""The JSON Schema of the spec language, generated from the pydantic models.

``python -m nnspec.spec.make_schema`` rewrites ``schemas/nnspec.schema.json``; a
test fails when the checked-in file differs from what this module generates.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from .model import SpecModel

__all__ = ["SCHEMA_FILE", "build_schema", "load_schema", "schema_text"]

SCHEMA_FILE = "nnspec.schema.json"
SCHEMA_ID = "https://nnspec.dev/schemas/nnspec.schema.json"


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec document."""
    schema = SpecModel.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def schema_text() -> str:
    """The schema as it is written to disk: sorted keys, two-space indent."""
    return json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"


@cache
def load_schema() -> dict[str, Any]:
    """The checked-in schema, as shipped with the package."""
    text = resources.files("nnspec.schemas").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)
