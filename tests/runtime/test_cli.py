"""`nnspec train`: arguments, --set and -p, exit statuses and messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nnspec.cli import main
from nnspec.commands import parse_overrides
from tests.runtime.conftest import TINY_MODEL, TINY_TRAIN, train_losses


def test_overrides_are_read_as_yaml() -> None:
    assert parse_overrides(
        [
            "epochs=2",
            "optimizer.lr=1e-3",
            "compile={backend: aot_eager}",
            "train.seed=3",
        ]
    ) == {
        "epochs": 2,
        "optimizer.lr": 0.001,
        "compile": {"backend": "aot_eager"},
        "seed": 3,
    }


def test_set_and_params_reach_the_run(
    tiny_spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    status = main(
        [
            "train",
            str(spec),
            "--out",
            str(out),
            "--set",
            "steps=3",
            "--set",
            "optimizer.lr=0.05",
            "-p",
            "width=4",
        ]
    )
    assert status == 0
    info = json.loads((out / "train.json").read_text())
    assert info["overrides"] == {"steps": 3, "optimizer.lr": 0.05}
    assert info["params"] == {"width": 4}
    assert info["train"]["optimizer"] == {
        "op": "AdamW",
        "lr": 0.05,
        "param_groups": None,
    }
    assert list(train_losses(out)) == [1, 2, 3]
    weights = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert weights["hidden.weight"].shape == (4, 6)
    assert "done at step 3" in capsys.readouterr().out


def test_spec_mistakes_exit_2_with_their_position(
    tiny_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("op: AdamW", "op: AdamV"))
    assert main(["train", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:20:19: error: unknown optimizer 'AdamV'")
    assert "\n      optimizer: {op: AdamV, lr: 0.01}\n" in err  # the line and a caret
    assert main(["train", str(spec), "--set", "optimizer.op=AdamW", "--set", "x"]) == 2
    assert capsys.readouterr().err == "error: --set expects KEY=VALUE, received 'x'\n"


def test_a_diverged_run_exits_1_naming_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = torch.randn(40, 6)
    x[12] = float("inf")
    torch.save({"x": x, "label": torch.randint(0, 3, (40,))}, tmp_path / "data.pt")
    spec = tmp_path / "inf.yaml"
    spec.write_text(
        TINY_MODEL + "train:\n"
        "  data: {source: {pt: data.pt}, batch_size: 4, shuffle: false}\n"
        "  loss: {logits: {op: CrossEntropyLoss, target: label}}\n"
        "  epochs: 1\n"
    )
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the loss became nan at step 4; training stopped")
    assert "no checkpoint was written before it" in err
