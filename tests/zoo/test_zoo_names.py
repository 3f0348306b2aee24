"""``zoo:NAME`` wherever a spec path is taken: ``nnspec.load``, the commands,
``extends:`` (also under ``--confine``); bad and unknown names are errors that list the
zoo and suggest the closest name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import nnspec
import nnspec.zoo
from nnspec.cli import compile_main, main
from nnspec.spec import SpecError

UNET = nnspec.zoo.folder() / "unet.yaml"
SMALL = ["-p", "base=4"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_by_name_with_params() -> None:
    spec = nnspec.load("zoo:unet", params={"classes": 5, "base": 4})
    assert spec.name == "UNet"
    assert spec.params == {"classes": 5, "base": 4}
    assert Path(spec.path) == UNET
    model = spec.build()
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5, 32, 32)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("zoo:unte", ["the zoo has no model 'unte'", "did you mean 'unet'?", "unet"]),
        ("zoo:resnet50", ["the zoo has no model 'resnet50'", "the zoo's models: unet"]),
        ("zoo:../examples/unet", ["names no zoo model", "lowercase"]),
        ("zoo:/etc/passwd", ["names no zoo model"]),
        ("zoo:UNet", ["names no zoo model"]),
        ("zoo:", ["names no zoo model"]),
        ("zoo:unet.yaml", ["names no zoo model"]),
    ],
)
def test_a_name_the_zoo_lacks_is_an_error(spec: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        nnspec.load(spec)
    assert (info.value.path, info.value.line) == (spec, 0)
    for word in words:
        assert word in info.value.message


def test_only_plain_names_reach_a_file() -> None:
    assert nnspec.zoo.path("unet") == UNET
    for name in ("../zoo/unet", "unet/", ".unet", "Unet", "un-et", "", "unet\0"):
        assert nnspec.zoo.path(name) is None, name


def test_compile_model_writes_name_py_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    before = _digest(UNET)
    assert compile_main(["zoo:unet", *SMALL]) == 0
    assert "wrote unet.py" in capsys.readouterr().out
    assert (tmp_path / "unet.py").read_text() == nnspec.load(
        "zoo:unet", {"base": 4}
    ).source()
    assert compile_main(["zoo:unet", "-o", "out.py", "-q"]) == 0
    assert (tmp_path / "out.py").is_file()
    assert _digest(UNET) == before


def test_compile_model_never_writes_over_the_zoo_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _digest(UNET)
    assert compile_main(["zoo:unet", "-o", str(UNET)]) == 2
    assert "would overwrite the spec" in capsys.readouterr().err
    assert _digest(UNET) == before


def test_commands_take_zoo_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["summary", "zoo:unet", *SMALL, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    expected = nnspec.load("zoo:unet", {"base": 4}).build(device="meta")
    assert summary["name"] == "UNet"
    assert summary["totals"]["params"] == sum(p.numel() for p in expected.parameters())
    assert main(["graph", "zoo:unet", *SMALL, "-o", "-", "--format", "mmd"]) == 0
    assert "down1" in capsys.readouterr().out
    assert main(["compile", "zoo:unet", *SMALL, "-o", "-"]) == 0
    assert "class UNet(nn.Module)" in capsys.readouterr().out
    assert main(["profile", "zoo:unet", *SMALL, "--steps", "1"]) == 0
    assert "UNet" in capsys.readouterr().out
    assert (tmp_path / "runs" / "profile" / "UNet").is_dir()


def test_export_names_its_file_after_the_zoo_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "zoo:unet", "-p", "base=2", "--format", "pt2"]) == 0, (
        capsys.readouterr().err
    )
    assert (tmp_path / "unet.pt2").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.pt2"]


def test_commands_report_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["summary", "zoo:unte"], ["graph", "zoo:unte", "-o", "-"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("zoo:unte: error: the zoo has no model 'unte'")
        assert "did you mean 'unet'?" in err
        assert "Traceback" not in err
    assert compile_main(["zoo:../examples/unet", "-o", "-"]) == 2
    assert "names no zoo model" in capsys.readouterr().err


DERIVED = """\
nnspec: 1
extends: zoo:unet
name: Segmenter
params: {base: 4}
replace:
  outc: {op: Conv2d, out_channels: 3, kernel_size: 1}
weights: {path: unet.pt, strict: false}
freeze: ["inc", "down*"]
"""


def test_fine_tuning_recipe(tmp_path: Path) -> None:
    # A checkpoint of the zoo's U-Net; a derived spec with a new head loads the rest
    # of it and freezes the encoder.
    torch.manual_seed(0)
    base = nnspec.load("zoo:unet", {"base": 4}).build()
    torch.save(base.state_dict(), tmp_path / "unet.pt")
    spec_file = tmp_path / "segmenter.yaml"
    spec_file.write_text(DERIVED, encoding="utf-8")
    with pytest.warns(UserWarning, match="outc"):
        model = nnspec.load(spec_file, root=tmp_path).build()
    assert type(model).__name__ == "Segmenter"
    theirs = base.state_dict()
    for key, tensor in model.state_dict().items():
        if key.startswith("outc"):
            assert key not in theirs
        else:
            assert torch.equal(tensor, theirs[key]), key
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(("inc.", "down"))), name
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_extends_zoo_under_confine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The zoo's file lies outside the folder: it is package data, read all the same.
    spec_file = tmp_path / "derived.yaml"
    spec_file.write_text(DERIVED.replace("weights:", "#"), encoding="utf-8")
    assert main(["summary", str(spec_file), "--confine"]) == 0
    assert "Segmenter" in capsys.readouterr().out
    # Confinement still holds for the derived spec's own files.
    outside = tmp_path.parent / f"{tmp_path.name}_outside.pt"
    torch.save({}, outside)
    spec_file.write_text(
        DERIVED.replace("unet.pt", f"../{outside.name}"), encoding="utf-8"
    )
    assert main(["compile", str(spec_file), "--confine", "-o", "-"]) == 0
    capsys.readouterr()
    with pytest.raises(SpecError, match="outside"):
        nnspec.load(spec_file, root=tmp_path).build()
    outside.unlink()


def test_loads_with_extends_zoo() -> None:
    spec = nnspec.loads(DERIVED.replace("weights:", "#"), path="<string>")
    model = spec.build(device="meta")
    assert model.outc.out_channels == 3
    with pytest.raises(SpecError) as info:
        nnspec.loads("nnspec: 1\nextends: zoo:unte\n", path="<string>")
    assert (info.value.line, info.value.column) == (2, 10)
    assert "did you mean 'unet'?" in info.value.message
