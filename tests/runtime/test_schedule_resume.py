"""Every documented scheduler on a run resumed with a longer plan (more epochs).

A filled-in length (OneCycleLR's total_steps, CosineAnnealingLR's T_max) follows
the new plan: after the resume the learning rate is that of a fresh run of the new
plan. Every other schedule goes on as it was, so the resumed run's rates are those
of an uninterrupted run of the new plan at every step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.runtime import Trainer
from tests.runtime.conftest import TINY_TRAIN, records

# 90 training samples in batches of 8: 11 steps per epoch.
STEPS_PER_EPOCH = 11
FIRST_EPOCHS, EPOCHS = 2, 3


def _lrs(run: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in records(run) if "lr" in r}


def _train(spec: Path, out: Path, epochs: int, *, resume: bool = False) -> None:
    Trainer(
        spec, out, overrides={"epochs": epochs}, resume=resume, progress=False
    ).fit()


def _runs(tiny_spec, tmp_path: Path, scheduler: str):
    train = TINY_TRAIN.replace("steps: 12", f"epochs: {EPOCHS}") + (
        f"  scheduler: {scheduler}\n"
    )
    spec = tiny_spec(train)
    _train(spec, tmp_path / "fresh", EPOCHS)
    _train(spec, tmp_path / "resumed", FIRST_EPOCHS)
    _train(spec, tmp_path / "resumed", EPOCHS, resume=True)
    fresh, resumed = _lrs(tmp_path / "fresh"), _lrs(tmp_path / "resumed")
    assert list(fresh) == list(resumed) == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    return fresh, resumed


@pytest.mark.parametrize(
    "scheduler",
    [
        "{op: OneCycleLR, max_lr: 0.02, interval: step}",
        "{op: CosineAnnealingLR, interval: step}",
        "{op: CosineAnnealingLR, interval: epoch}",
    ],
)
def test_a_filled_in_length_follows_the_new_plan(
    tiny_spec, tmp_path: Path, scheduler: str
) -> None:
    fresh, resumed = _runs(tiny_spec, tmp_path, scheduler)
    after = [s for s in fresh if s > FIRST_EPOCHS * STEPS_PER_EPOCH]
    assert [resumed[s] for s in after] == pytest.approx(
        [fresh[s] for s in after], rel=1e-9, abs=1e-12
    )
    # The first part ran the two-epoch schedule, which anneals faster.
    end = FIRST_EPOCHS * STEPS_PER_EPOCH
    assert resumed[end] < fresh[end] * 0.9


@pytest.mark.parametrize(
    "scheduler",
    [
        "{op: OneCycleLR, max_lr: 0.02, total_steps: 33, interval: step}",
        "{op: StepLR, step_size: 1, gamma: 0.5, interval: epoch}",
        "{op: ReduceLROnPlateau, patience: 0, factor: 0.5, threshold: 0.5}",
    ],
)
def test_other_schedules_go_on_as_they_were(
    tiny_spec, tmp_path: Path, scheduler: str
) -> None:
    fresh, resumed = _runs(tiny_spec, tmp_path, scheduler)
    assert resumed == fresh
    assert len(set(fresh.values())) > 1  # the schedule did change the rate
