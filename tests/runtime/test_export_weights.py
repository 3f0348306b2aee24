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
