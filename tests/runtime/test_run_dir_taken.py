"""A run directory that already holds a run is refused in the terms of the caller:
Python arguments from the Python API, flags from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.runtime import Trainer, TrainError


def test_python_api_names_its_arguments(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    Trainer(spec, out, overrides={"steps": 1}, progress=False).fit()
    with pytest.raises(TrainError) as info:
        Trainer(spec, out, overrides={"steps": 1}, progress=False).fit()
    message = str(info.value)
    assert message == (
        f"{out} already holds a run (last checkpoint: {out / 'checkpoints' / 'last.pt'})"
        "; continue it with resume=True, start over with overwrite=True, or pick "
        "another out_dir"
    )
    assert "--" not in message


def test_command_line_names_its_flags(
    tiny_spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    argv = ["train", str(spec), "--out", str(out), "--set", "steps=1"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {out} already holds a run (last checkpoint: "
        f"{out / 'checkpoints' / 'last.pt'}); continue it with --resume, start over "
        "with --overwrite, or pick another --out\n"
    )
