"""Every spec of the model zoo, whatever it is: it compiles without allowed imports, its
generated code imports only torch, it builds on the meta device, and ``nnspec zoo``
lists it as it is."""

from __future__ import annotations

import ast
import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

import nnspec
import nnspec.zoo
from nnspec.cli import main
from tests.compiler import handwritten
from tests.compiler.examples import copy_weights
from tests.conftest import ROOT

ZOO = ROOT / "zoo"
FILES = sorted(ZOO.glob("*.yaml"))
NAMES = [p.stem for p in FILES]


@pytest.fixture(scope="module")
def listed() -> dict[str, dict]:
    """``nnspec zoo --json``, by name."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["zoo", "--json"]) == 0
    return {row["name"]: row for row in json.loads(out.getvalue())}


def test_the_zoo_lists_every_file_of_its_folder() -> None:
    assert NAMES, "the zoo holds no spec"
    assert nnspec.zoo.names() == NAMES
    assert nnspec.zoo.folder().resolve() == ZOO.resolve()
    for name in NAMES:
        assert nnspec.zoo.NAME_PATTERN.match(name), f"{name}.yaml: not a zoo name"


@pytest.mark.parametrize("name", NAMES)
def test_zoo_spec_compiles_to_torch_only_code(name: str) -> None:
    spec = nnspec.load(f"zoo:{name}")  # allow_imports: none
    assert Path(spec.path).resolve() == (ZOO / f"{name}.yaml").resolve()
    tree = ast.parse(spec.source())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    assert imported - {"__future__"} == {"torch"}, imported


@pytest.mark.parametrize("name", NAMES)
def test_zoo_spec_names_what_it_matches(name: str) -> None:
    reference = nnspec.zoo.reference(name)
    assert reference, f"zoo/{name}.yaml has no leading '# reference: ...' line"
    head = (ZOO / f"{name}.yaml").read_text(encoding="utf-8").split("\nnnspec:")[0]
    assert f"# reference: {reference}" in head


@pytest.mark.parametrize("name", NAMES)
def test_zoo_row_is_the_model_built_on_meta(name: str, listed: dict) -> None:
    spec = nnspec.load(f"zoo:{name}")
    model = spec.build(device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    row = listed[name]
    assert row["parameters"] == sum(p.numel() for p in model.parameters()) > 0
    assert row["model"] == spec.name == type(model).__name__
    assert row["params"] == spec.params
    assert row["reference"] == nnspec.zoo.reference(name)
    written = spec.compiled.spec.inputs
    assert list(row["inputs"]) == list(written)
    for input_name, meta in row["inputs"].items():
        decl = written[input_name]
        shape = decl if isinstance(decl, list) else decl.shape
        assert meta["shape"] == list(shape)


def test_zoo_table_in_text(capsys: pytest.CaptureFixture[str], listed: dict) -> None:
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name", "model", "parameters", "inputs", "params", "reference"
    ]  # fmt: skip
    for name, row in listed.items():
        (line,) = [line for line in lines if line.startswith(f"{name} ")]
        assert f" {row['parameters']:,} " in line
        assert line.endswith(row["reference"])


def test_zoo_unet_is_examples_unet() -> None:
    # The zoo's U-Net is the example's, with the line naming its reference.
    zoo_lines = (ZOO / "unet.yaml").read_text(encoding="utf-8").splitlines()
    body = [line for line in zoo_lines if not line.startswith("# reference:")]
    assert (
        body == (ROOT / "examples/unet.yaml").read_text(encoding="utf-8").splitlines()
    )


def test_zoo_unet_computes_the_hand_written_unet() -> None:
    torch.manual_seed(0)
    ours = nnspec.load("zoo:unet", params={"base": 4, "classes": 3}).build().eval()
    ref = handwritten.UNet(classes=3, base=4).eval()
    for module in ref.modules():  # statistics that are not the defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    copy_weights(ref, ours)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
