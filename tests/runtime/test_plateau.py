"""ReduceLROnPlateau's mode follows the direction of the monitored value."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.runtime import Trainer
from nnspec.spec.errors import SpecError
from tests.runtime.conftest import TINY_TRAIN, records

PLATEAU = TINY_TRAIN.replace("steps: 12", "epochs: 3") + (
    "  monitor: val_accuracy\n"
    "  scheduler: {op: ReduceLROnPlateau, patience: 0, factor: 0.5}\n"
)


def test_an_accuracy_monitor_is_maximised(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(PLATEAU.replace("log_every: 1", "log_every: 100"), n=300)
    trainer = Trainer(spec, tmp_path / "run", progress=False)
    trainer.fit()
    accuracies = [
        r["val_accuracy"] for r in records(tmp_path / "run") if "val_loss" in r
    ]
    assert trainer.scheduler.mode == "max"
    # The best the scheduler tracks is the highest accuracy, not the lowest.
    assert trainer.scheduler.best == max(accuracies)
    assert max(accuracies) > min(accuracies)


def test_a_loss_monitor_is_minimised(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(PLATEAU.replace("monitor: val_accuracy", "monitor: val_loss"))
    trainer = Trainer(spec, tmp_path / "run", overrides={"epochs": 1}, progress=False)
    assert trainer.settings.scheduler_args["mode"] == "min"


def test_a_contradicting_mode_is_an_error_at_its_line(tiny_spec, tmp_path) -> None:
    spec = tiny_spec(PLATEAU.replace("factor: 0.5}", "factor: 0.5, mode: min}"))
    with pytest.raises(SpecError) as info:
        Trainer(spec, tmp_path / "run", progress=False)
    [diag] = info.value.diagnostics
    text = "  scheduler: {op: ReduceLROnPlateau, patience: 0, factor: 0.5, mode: min}"
    line = spec.read_text().splitlines().index(text) + 1
    assert (diag.line, diag.column) == (line, text.index("min}") + 1)
    assert diag.message == (
        "ReduceLROnPlateau mode 'min' contradicts the monitor: val_accuracy is "
        "better higher, so the mode is 'max' (leave mode out: it follows the monitor)"
    )


def test_an_agreeing_mode_is_accepted(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(PLATEAU.replace("factor: 0.5}", "factor: 0.5, mode: max}"))
    trainer = Trainer(spec, tmp_path / "run", progress=False)
    assert trainer.settings.scheduler_args["mode"] == "max"
