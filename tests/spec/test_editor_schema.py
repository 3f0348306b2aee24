"""The JSON Schema as an editor uses it: op names with descriptions, per-op arguments
and required ones, rules on names and expressions; none of it refuses a valid spec,
and none of it reaches the loader's (structural) schema."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from nnspec.spec.schema import load_schema, structural_schema
from tests.compiler.test_spec_language import (
    SECTION_1_LENET,
    SECTION_4_TWO_HEADS,
)

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "errors" / "cases").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def _errors(validator, text: str) -> list[jsonschema.ValidationError]:
    return list(validator.iter_errors(yaml.safe_load(text)))


def _valid_specs() -> list[tuple[str, str]]:
    specs = [
        (p.name, p.read_text()) for p in sorted((ROOT / "examples").glob("*.yaml"))
    ]
    specs += [
        (p.name, p.read_text())
        for p in sorted((ROOT / "bench" / "specs").glob("*.yaml"))
    ]
    specs += [("section 1", SECTION_1_LENET), ("section 4", SECTION_4_TWO_HEADS)]
    # docs/errors.md shows wrong specs on purpose.
    docs = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "errors.md"]
    for doc in [ROOT / "README.md", *docs]:
        for i, block in enumerate(
            re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)
        ):
            if re.search(r"^nnspec: 1", block, re.M):
                specs.append((f"{doc.name} block {i}", block))
    return specs


@pytest.mark.parametrize(("where", "text"), _valid_specs(), ids=lambda v: str(v)[:40])
def test_valid_specs_raise_nothing_in_an_editor(
    validator, where: str, text: str
) -> None:
    assert [e.message[:200] for e in _errors(validator, text)] == [], where


def test_the_schema_alone_flags_most_of_the_error_corpus(validator) -> None:
    flagged, yaml_valid = [], 0
    for case in CASES:
        try:
            data = yaml.safe_load(case.read_text())
        except yaml.YAMLError:
            continue
        yaml_valid += 1
        if any(True for _ in validator.iter_errors(data)):
            flagged.append(case.name)
    assert yaml_valid >= 100
    assert len(flagged) >= 60, f"{len(flagged)} of {yaml_valid}: {flagged}"


def _spec(*layers: str, extra: str = "") -> str:
    body = "\n".join(f"  - {layer}" for layer in layers)
    return f"nnspec: 1\nname: Net\ninputs: {{x: [3, 8, 8]}}\nlayers:\n{body}\n{extra}"


@pytest.mark.parametrize(
    ("layer", "where"),
    [
        ("{op: BatchNorm}", "$.layers[0]"),  # unknown op
        ("{op: relux}", "$.layers[0]"),
        ("{op: Conv2d, out_channels: 4, kernal_size: 3}", "$.layers[0]"),  # misspelt
        ("{op: Conv2d, kernel_size: 3}", "$.layers[0]"),  # out_channels missing
        ("{op: Conv2d, args: [4, 3], out_channels: 4}", "$.layers[0]"),  # given twice
        ("{op: add, in: [x, x], beta: 2}", "$.layers[0]"),  # a function's keywords
        ("{op: Linear, name: class, out_features: 3}", "$.layers[0].name"),
        ("{op: Linear, name: forward, out_features: 3}", "$.layers[0].name"),
        ('{op: Linear, out_features: "${x.shape[1] // 2"}', "$.layers[0].out_features"),
        ('{op: Linear, out_features: "${x.__class__}"}', "$.layers[0].out_features"),
        ('{op: ReLU, repeat: "${4 / 2}"}', "$.layers[0].repeat"),
        ("{op: ReLU, in: 'a b'}", "$.layers[0].in"),
        ("{op: 'os.path:join'}", "$.layers[0]"),
    ],
)
def test_editor_flags(validator, layer: str, where: str) -> None:
    errors = _errors(validator, _spec(layer))
    assert errors, layer
    paths = {e.json_path for e in errors} | {
        c.json_path for e in errors for c in (e.context or ())
    }
    assert any(p.startswith(where) for p in paths), (layer, paths)


def test_a_spec_with_blocks_may_name_them(validator) -> None:
    text = _spec("{op: Twice}", extra="blocks:\n  Twice: {layers: [ReLU, ReLU]}\n")
    assert _errors(validator, text) == []


def test_op_names_complete_with_torch_descriptions() -> None:
    names = {o["const"]: o for o in load_schema()["$defs"]["EditorOpName"]["anyOf"]}
    assert {"Conv2d", "BatchNorm2d", "ReLU", "cat", "softmax", "flatten"} <= set(names)
    assert names["Conv2d"]["description"].startswith(
        "torch.nn.Conv2d: Applies a 2D convolution"
    )
    assert names["cat"]["markdownDescription"].startswith("`torch.cat`")
    assert all("description" in o for o in names.values())


def test_the_loader_sees_none_of_the_editor_rules() -> None:
    loader = structural_schema()
    assert not any(name.startswith("Editor") for name in loader["$defs"])
    assert "allOf" not in loader
    assert all("allOf" not in definition for definition in loader["$defs"].values())
    # The loader's schema accepts what only the compiler can judge.
    jsonschema.validate(yaml.safe_load(_spec("{op: BatchNorm}")), loader)
