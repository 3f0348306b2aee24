"""Small runtime behaviours: a metric that cannot say anything, the weights report,
exporting an FSDP run, and modules beside the spec."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.runtime.settings import resolve_settings
from nnspec.runtime.weights import save_weights
from tests.runtime.conftest import TINY_TRAIN


def test_top5_accuracy_of_five_classes_or_fewer_is_an_error(tiny_spec) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("[accuracy]", "[accuracy, top5_accuracy]"))
    with pytest.raises(nnspec.SpecError) as info:
        resolve_settings(nnspec.load(spec))
    [diag] = info.value.diagnostics
    text = "  metrics: {logits: [accuracy, top5_accuracy]}"
    line = spec.read_text().splitlines().index(text) + 1
    assert (diag.line, diag.column) == (line, text.index("top5") + 1)
    assert diag.message == (
        "top5_accuracy of 'logits' would always be 1.0: it has 3 classes (dim 1), "
        "and a class is always among the top 5 of at most 5; use accuracy"
    )


def test_top5_accuracy_of_more_classes_is_kept(tiny_spec) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("[accuracy]", "[top5_accuracy]"))
    text = spec.read_text().replace("out_features: 3", "out_features: 6")
    spec.write_text(text)
    settings = resolve_settings(nnspec.load(spec))
    assert [m.key for m in settings.metrics] == ["val_top5_accuracy"]


def test_a_partial_weights_report_is_printed_as_a_warning(
    tiny_spec, tmp_path: Path, capsys, recwarn
) -> None:
    base = tiny_spec(TINY_TRAIN.replace("steps: 12", "steps: 1"))
    save_weights(nnspec.load(base).build(), tmp_path / "pretrained.safetensors")
    derived = tmp_path / "derived.yaml"
    derived.write_text(
        "nnspec: 1\nextends: tiny.yaml\nname: Derived\n"
        "replace: {head: {op: Linear, out_features: 5}}\n"
        "weights: {path: pretrained.safetensors, strict: false}\n"
    )
    text = base.read_text().replace("out_features: 3", "out_features: 5")
    base.write_text(text)  # labels 0..2 of 5 classes
    code = main(["train", str(derived), "--out", str(tmp_path / "run")])
    assert code == 0
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "pretrained.safetensors" in line]
    assert line.startswith("warning: ")
    assert "weights pretrained.safetensors: loaded 2 tensors" in line
    assert "shape mismatch for head.weight: model [5, 16], file [3, 16]" in line
    assert "UserWarning" not in err and "loop.py" not in err
    assert not [w for w in recwarn if "pretrained" in str(w.message)]


def test_export_of_an_fsdp_run_suggests_consolidate(tmp_path: Path, capsys) -> None:
    shards = tmp_path / "run" / "checkpoints" / "best.dcp"
    shards.mkdir(parents=True)
    (shards / ".metadata").write_bytes(b"")
    code = main(["export-weights", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert (
        f"has no best checkpoint ({best}) but a sharded one of an FSDP run: "
        f"`nnspec consolidate {shards}` writes {best}; then export again"
    ) in err
    assert not best.exists()


DATA_MODULE = """\
import torch

def load():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=generator)
    return {"x": x, "label": x[:, :3].argmax(dim=1)}, None
"""


def test_an_allowed_data_module_beside_the_spec_is_found(
    tiny_spec, tmp_path: Path, monkeypatch
) -> None:
    package = "nnspec_beside_spec_data"
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / f"{package}.py").write_text(DATA_MODULE)
    spec = tiny_spec(
        textwrap.dedent(TINY_TRAIN)
        .replace("source: {pt: data.pt}", f"source: '{package}:load'")
        .replace("    val_fraction: 0.1\n", "")
        .replace("  metrics: {logits: [accuracy]}\n", "")
        .replace("steps: 12", "steps: 2")
    )
    moved = folder / "tiny.yaml"
    moved.write_text(spec.read_text())
    monkeypatch.chdir(tmp_path)  # neither the working directory nor the path has it
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, package, raising=False)
    args = ["train", str(moved), "--out", str(tmp_path / "run")]
    assert main([*args, "--allow-import", package]) == 0
    assert sys.path[-1] == str(folder)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_the_spec_folder_is_not_added_without_allowed_imports(
    tiny_spec, tmp_path: Path, monkeypatch
) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("steps: 12", "steps: 1"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 0
    assert sys.path == before
