"""The checked-in JSON Schema is what the pydantic models generate."""

from __future__ import annotations

from nnspec.spec.schema import SCHEMA_FILE, schema_text
from tests.conftest import ROOT


def test_checked_in_schema_is_current() -> None:
    on_disk = (ROOT / "schemas" / SCHEMA_FILE).read_text(encoding="utf-8")
    assert on_disk == schema_text(), (
        "schemas/nnspec.schema.json is stale: run python -m nnspec.spec.make_schema"
    )


def _editor_errors(node: dict) -> list[str]:
    """What an editor using the checked-in schema reports for one node (of a spec that
    defines a block MyBlock, so that op names other than torch's may be used)."""
    import jsonschema

    from nnspec.spec.schema import load_schema

    doc = {
        "nnspec": 1,
        "name": "Net",
        "inputs": {"x": [3, 8, 8]},
        "blocks": {"MyBlock": {"layers": ["ReLU"]}},
        "layers": [node],
    }
    validator = jsonschema.Draft202012Validator(load_schema())
    return [e.message for e in validator.iter_errors(doc)]


def test_schema_lists_each_layers_arguments_for_editors() -> None:
    assert _editor_errors({"op": "Conv2d", "out_channels": 4, "kernel_size": 3}) == []
    assert (
        _editor_errors({"op": "Conv2d", "out_channels": "${width}", "kernel_size": 3})
        == []
    )
    assert _editor_errors({"op": "LSTM", "hidden_size": 8, "batch_first": True}) == []
    assert _editor_errors({"op": "Conv2d", "out_channels": 4, "kernal_size": 3})
    assert _editor_errors({"op": "Conv2d", "out_channels": "four"})
    assert _editor_errors({"op": "Linear", "out_features": 4, "bias": "yes"})
    # Blocks and functions are not constrained by the per-layer lists.
    assert _editor_errors({"op": "MyBlock", "anything": 1}) == []
