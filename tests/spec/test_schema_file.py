"""The checked-in JSON Schema is what the pydantic models generate."""

from __future__ import annotations

from nnspec.spec.schema import SCHEMA_FILE, schema_text
from tests.conftest import ROOT


def test_checked_in_schema_is_current() -> None:
    on_disk = (ROOT / "schemas" / SCHEMA_FILE).read_text(encoding="utf-8")
    assert on_disk == schema_text(), (
        "schemas/nnspec.schema.json is stale: run python -m nnspec.spec.make_schema"
    )
