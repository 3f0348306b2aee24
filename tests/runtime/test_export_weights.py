"""Weights of a run, exported, load into the spec's model and into derived specs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.runtime import Trainer


def test_export_then_load(
    tiny_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec()
    trainer = Trainer(spec, tmp_path / "run", progress=False)
    trainer.fit()
    out = tmp_path / "tiny.safetensors"
    assert (
        main(
            [
                "export-weights",
                str(tmp_path / "run"),
                "-o",
                str(out),
                "--checkpoint",
                "last",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    # Strictly into the model built from the same spec: every tensor, the trained values.
    built = nnspec.load(spec).build(weights=out)
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(built.state_dict()[key], value.cpu())
    # Into a derived spec with a new head: what fits loads, the rest is reported.
    derived = tmp_path / "derived.yaml"
    derived.write_text(
        "nnspec: 1\nextends: tiny.yaml\nname: Five\n"
        "replace: {head: {op: Linear, out_features: 5}}\n"
        "weights: {path: tiny.safetensors, strict: false}\n"
    )
    with pytest.warns(UserWarning, match="shape mismatch for head.weight"):
        model = nnspec.load(derived).build()
    torch.testing.assert_close(model.hidden.weight, trainer.model.hidden.weight.cpu())


def test_export_of_a_run_without_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export-weights", str(tmp_path)]) == 2
    assert "has no best checkpoint" in capsys.readouterr().err


def test_exported_safetensors_say_where_they_come_from(
    tiny_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open

    from nnspec.runtime.checkpoint import load_checkpoint, spec_hash

    spec = tiny_spec()
    Trainer(spec, tmp_path / "run", progress=False).fit()
    out = tmp_path / "tiny.safetensors"
    assert main(["export-weights", str(tmp_path / "run"), "-o", str(out)]) == 0
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert metadata["format"] == "pt"
    assert metadata["nnspec_version"] == nnspec.__version__
    assert metadata["spec_name"] == "Tiny"
    assert metadata["spec_hash"] == spec_hash(nnspec.load(spec)) == state["spec_hash"]
    assert metadata["step"] == str(state["step"])
    assert metadata["params"] == '{"width": 16}'
