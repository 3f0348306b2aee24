"""``nnspec train --profile [STEPS]``: a torch.profiler trace of real training steps
in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.runtime import Trainer
from tests.runtime.conftest import train_losses


def names(trace: Path) -> set[str]:
    events = json.loads(trace.read_text(encoding="utf-8"))["traceEvents"]
    return {e.get("name", "") for e in events}


def test_train_profile_traces_steps_of_the_run(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = tiny_spec()
    assert main(["train", str(spec), "--out", str(out), "--profile", "2"]) == 0
    found = names(out / "profile.json")
    # One step waited, one warmed up, then steps 3 and 4 recorded (0-based 2, 3).
    assert {n for n in found if n.startswith("ProfilerStep#")} == {
        "ProfilerStep#2",
        "ProfilerStep#3",
    }
    assert any(n.startswith("Optimizer.step#AdamW") for n in found)
    assert any("backward" in n.lower() for n in found)
    assert len(train_losses(out)) == 12  # the run itself goes on to its end


def test_a_run_shorter_than_the_trace_writes_what_it_recorded(
    tiny_spec, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    Trainer(tiny_spec(), out, overrides={"steps": 3}, profile=5, progress=False).fit()
    assert "ProfilerStep#2" in names(out / "profile.json")


def test_overwrite_removes_the_trace(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(tiny_spec(), out, overrides={"steps": 3}, profile=1, progress=False).fit()
    assert (out / "profile.json").exists()
    Trainer(
        tiny_spec(), out, overrides={"steps": 1}, overwrite=True, progress=False
    ).fit()
    assert not (out / "profile.json").exists()


@pytest.mark.parametrize("value", ["0", "two"])
def test_profile_takes_a_positive_number_of_steps(
    tiny_spec, capsys, value: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", str(tiny_spec()), "--profile", value])
    assert info.value.code == 2
    assert f"expected a number of steps, received {value!r}" in capsys.readouterr().err
