"""Early stopping (exact across a resume), callbacks that watch and stop a run, and
``steps: 0``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import nnspec
from nnspec.runtime import Trainer, TrainError, load_checkpoint
from nnspec.runtime.stopping import EarlyStopping
from tests.runtime.conftest import TINY_TRAIN, records, train_losses

# Validation every 2 steps; the tiny model's val_loss falls by about 0.03 a
# validation at first, so with min_delta 0.1 the validations at steps 4, 6 and 8
# do not count as improvements on step 2's, and patience 3 stops the run at step 8.
EARLY = TINY_TRAIN.replace(
    "  steps: 12\n",
    "  steps: 40\n  val_every: 2\n  early_stop: {patience: 3, min_delta: 0.1}\n",
)


def fit(spec: Path, out: Path, **kwargs: Any):
    return Trainer(spec, out, progress=False, **kwargs).fit()


def validations(run: Path) -> list[dict[str, Any]]:
    return [r for r in records(run) if "val_loss" in r]


def test_early_stopping_ends_the_run_when_the_monitor_stalls(
    tiny_spec, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = fit(tiny_spec(EARLY), out)
    vals = validations(out)
    assert [r["step"] for r in vals] == [2, 4, 6, 8]
    first = vals[0]["val_loss"]
    assert all(first - r["val_loss"] <= 0.1 for r in vals[1:])
    assert (result.status, result.step) == ("stopped", 8)
    assert result.reason == (
        f"early stopping: val_loss did not improve on {first:.4g} by more than 0.1 "
        "in 3 validations"
    )
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["step"] == 8
    assert last["early_stop"] == {"best": first, "waited": 3}
    assert max(train_losses(out)) == 8


def test_early_stopping_is_exact_across_a_resume(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(EARLY)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    fit(spec, straight)
    fit(spec, stopped, overrides={"steps": 6})
    # Stopped with two validations waited: the resumed run must remember them.
    assert (
        load_checkpoint(stopped / "checkpoints" / "last.pt")["early_stop"]["waited"]
        == 2
    )
    result = fit(spec, stopped, resume=True)
    assert (result.status, result.step) == ("stopped", 8)
    assert train_losses(stopped) == train_losses(straight)
    assert validations(stopped) == validations(straight)


def test_a_run_early_stopping_ended_stays_ended_unless_patience_grows(
    tiny_spec, tmp_path: Path
) -> None:
    spec = tiny_spec(EARLY)
    out = tmp_path / "run"
    fit(spec, out)
    again = fit(spec, out, resume=True)
    assert (again.status, again.step) == ("stopped", 8)
    assert max(train_losses(out)) == 8
    longer = fit(spec, out, resume=True, overrides={"early_stop.patience": 5})
    assert longer.status == "stopped" and longer.step > 8
    assert longer.reason is not None and longer.reason.endswith("in 5 validations")
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (last["step"], last["early_stop"]["waited"]) == (longer.step, 5)


@pytest.mark.parametrize(
    ("higher", "values", "stops_at"),
    [
        (False, [1.0, 0.95, 0.85, 0.84, 0.83], 5),  # min_delta 0.1, patience 2
        (True, [0.5, 0.55, 0.7, 0.75, 0.9], None),
        (True, [0.5, float("nan"), 0.55, 0.9], 3),
    ],
)
def test_early_stopping_counts_by_the_monitors_direction(
    higher: bool, values: list[float], stops_at: int | None
) -> None:
    early = EarlyStopping("m", higher, patience=2, min_delta=0.1)
    stopped = [step for step, v in enumerate(values, 1) if early.update(v, step)]
    assert stopped[:1] == ([stops_at] if stops_at else [])


class Recorder:
    """Keeps what the hooks were given; stops the run after step 5."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.steps: dict[int, float] = {}
        self.validations: list[dict[str, Any]] = []
        self.checkpoints: list[tuple[int, Path, int]] = []

    def on_step(self, trainer: Trainer, step: int, loss: float) -> None:
        self.steps[step] = loss
        if step == self.stop_at:
            trainer.stop("enough")

    def on_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.validations.append(metrics)

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        saved = load_checkpoint(path)["step"]
        self.checkpoints.append((trainer.position.step, path, saved))


def test_callbacks_see_each_step_validation_and_checkpoint(
    tiny_spec, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    seen = Recorder()
    fit(tiny_spec(), out, callbacks=[seen])
    assert seen.steps == pytest.approx(train_losses(out), rel=1e-6)  # log_every 1
    assert seen.validations == validations(out)
    last = out / "checkpoints" / "last.pt"
    # Epoch end (11), new bests and the end (12): each seen once written.
    assert [(step, saved) for step, _, saved in seen.checkpoints] == [
        (11, 11),
        (12, 12),
    ]
    assert {path for _, path, _ in seen.checkpoints} == {last}


def test_a_callback_can_stop_the_run_with_a_checkpoint(
    tiny_spec, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    seen = Recorder(stop_at=5)
    result = fit(tiny_spec(), out, callbacks=[seen])
    assert (result.status, result.step, result.reason) == ("stopped", 5, "enough")
    assert list(seen.steps) == [1, 2, 3, 4, 5]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 5
    assert [step for step, _, _ in seen.checkpoints] == [5]
    # The stopped run resumes like any other, to its planned end.
    resumed = Trainer(tiny_spec(), out, resume=True, progress=False).fit()
    assert (resumed.status, resumed.step) == ("completed", 12)


def test_a_callback_without_hooks_is_refused(tiny_spec) -> None:
    with pytest.raises(TrainError, match="has none of the methods on_step"):
        Trainer(tiny_spec(), callbacks=[object()], progress=False)


def test_steps_0_validates_the_built_model_and_saves_it(
    tiny_spec, tmp_path: Path
) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    result = fit(spec, out, overrides={"steps": 0})
    assert (result.status, result.step, result.epoch) == ("completed", 0, 0)
    assert train_losses(out) == {}
    [val] = validations(out)
    assert val["step"] == 0
    torch.manual_seed(0)  # the train section's seed, as the run built it
    built = nnspec.load(spec).build().state_dict()
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["step"] == 0
    assert all(torch.equal(v, built[k]) for k, v in last["model"].items())
    assert load_checkpoint(out / "checkpoints" / "best.pt")["best"]["step"] == 0
    # Training it goes on from there.
    resumed = Trainer(spec, out, resume=True, progress=False).fit()
    assert resumed.step == 12
