"""Chains of schedulers (a list of phases, SequentialLR, ChainedScheduler), LambdaLR
from an allowed import, and their mistakes, located in the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as sched

from nnspec.runtime import Trainer
from nnspec.spec import SpecError
from tests.runtime.conftest import TINY_TRAIN, records, train_losses

# 11 steps an epoch; 24 steps.
TRAIN = TINY_TRAIN.replace("  steps: 12\n", "  steps: 24\n")
WARMUP_COSINE = (
    "  scheduler:\n"
    "    - {op: LinearLR, start_factor: 0.1, total_iters: 6, steps: 6, "
    "interval: step}\n"
    "    - {op: CosineAnnealingLR, eta_min: 0.001, interval: step}\n"
)


def fit(spec: Path, out: Path, **kwargs: Any):
    return Trainer(spec, out, progress=False, **kwargs).fit()


def lrs(run: Path) -> list[float]:
    return [r["lr"] for r in records(run) if "lr" in r]


def reference(build: Any, steps: int = 24) -> list[float]:
    """The rate after each of ``steps`` steps of a torch schedule, built alone."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = build(optimizer)
    found = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        found.append(optimizer.param_groups[0]["lr"])
    return found


def test_warmup_then_cosine_is_a_sequential_schedule(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(TRAIN + WARMUP_COSINE), out)

    def build(optimizer: Any) -> Any:
        warmup = sched.LinearLR(optimizer, start_factor=0.1, total_iters=6)
        # The last phase lasts what is left of the run: 24 - 6 steps.
        cosine = sched.CosineAnnealingLR(optimizer, T_max=18, eta_min=0.001)
        return sched.SequentialLR(optimizer, [warmup, cosine], milestones=[6])

    assert lrs(out) == pytest.approx(reference(build), rel=1e-9)
    assert lrs(out)[-1] == pytest.approx(0.001)


def test_sequential_lr_with_milestones_and_a_chained_scheduler(
    tiny_spec, tmp_path: Path
) -> None:
    sequential = (
        "  scheduler:\n"
        "    op: SequentialLR\n"
        "    interval: step\n"
        "    milestones: [5]\n"
        "    schedulers: [{op: ConstantLR, factor: 0.5, total_iters: 5}, "
        "{op: ExponentialLR, gamma: 0.9}]\n"
    )
    fit(tiny_spec(TRAIN + sequential), tmp_path / "seq")

    def seq(optimizer: Any) -> Any:
        parts = [
            sched.ConstantLR(optimizer, factor=0.5, total_iters=5),
            sched.ExponentialLR(optimizer, gamma=0.9),
        ]
        return sched.SequentialLR(optimizer, parts, milestones=[5])

    assert lrs(tmp_path / "seq") == pytest.approx(reference(seq), rel=1e-9)

    chained = (
        "  scheduler:\n"
        "    op: ChainedScheduler\n"
        "    interval: step\n"
        "    schedulers: [{op: LinearLR, start_factor: 0.5, total_iters: 4}, "
        "{op: ExponentialLR, gamma: 0.9}]\n"
    )
    fit(tiny_spec(TRAIN + chained), tmp_path / "chained")

    def chain(optimizer: Any) -> Any:
        parts = [
            sched.LinearLR(optimizer, start_factor=0.5, total_iters=4),
            sched.ExponentialLR(optimizer, gamma=0.9),
        ]
        return sched.ChainedScheduler(parts, optimizer=optimizer)

    assert lrs(tmp_path / "chained") == pytest.approx(reference(chain), rel=1e-9)


class StopAt:
    """Stops the run after a step, as a kill after that step's checkpoint would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer: Trainer, step: int, loss: float) -> None:
        if step == self.step:
            trainer.stop()


@pytest.mark.parametrize("stop_at", [4, 9])  # in the warmup, and after it
def test_a_chain_resumes_exactly(tiny_spec, tmp_path: Path, stop_at: int) -> None:
    spec = tiny_spec(TRAIN + WARMUP_COSINE)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    fit(spec, straight)
    assert fit(spec, stopped, callbacks=[StopAt(stop_at)]).step == stop_at
    fit(spec, stopped, resume=True)
    assert lrs(stopped) == lrs(straight)
    assert train_losses(stopped) == train_losses(straight)


@pytest.mark.parametrize("stop_at", [4, 9])
def test_a_chains_filled_in_length_follows_a_new_plan(
    tiny_spec, tmp_path: Path, stop_at: int
) -> None:
    # The first part plans `stop_at` steps, so its cosine phase is shorter; after
    # the resume the rate is that of a fresh 24-step run.
    spec = tiny_spec(TRAIN + WARMUP_COSINE)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    fit(spec, straight)
    fit(spec, stopped, overrides={"steps": stop_at})
    fit(spec, stopped, resume=True)
    assert lrs(stopped)[stop_at:] == pytest.approx(lrs(straight)[stop_at:], rel=1e-9)


def test_lambda_lr_takes_a_function_from_an_allowed_package(
    tiny_spec, tmp_path: Path
) -> None:
    schedule = (
        "  scheduler: {op: LambdaLR, interval: step, "
        "lr_lambda: 'tests.runtime.schedule_functions:halve_every_4'}\n"
    )
    spec = tiny_spec(TRAIN + schedule)
    with pytest.raises(SpecError) as info:
        Trainer(spec, tmp_path / "refused", progress=False).fit()
    assert "imports package 'tests', which is not allowed" in info.value.message
    line = spec.read_text().splitlines().index(schedule.rstrip("\n")) + 1
    column = schedule.index("'tests") + 1  # at the value
    assert (info.value.line, info.value.column) == (line, column)
    out = tmp_path / "run"
    fit(spec, out, allow_imports=["tests"])
    assert lrs(out) == pytest.approx([0.01 * 0.5 ** (s // 4) for s in range(1, 25)])


@pytest.mark.parametrize(
    ("schedule", "at", "message"),
    [
        (
            "[{op: LinearLR, interval: step}, {op: CosineAnnealingLR}]",
            "{op: LinearLR",
            "phase 1 of the chain needs steps: the number of optimizer steps it "
            "lasts before the next phase starts",
        ),
        (
            "[{op: LinearLR, interval: step, steps: 3}, "
            "{op: CosineAnnealingLR, interval: epoch}]",
            "epoch}",
            "the parts of a chain step together: this one says epoch, an earlier "
            "one step",
        ),
        (
            "[{op: LinearLR, steps: 3}, {op: ReduceLROnPlateau}]",
            "ReduceLROnPlateau",
            "ReduceLROnPlateau cannot be a part of a chain of schedulers",
        ),
        (
            "{op: StepLR, step_size: 2, steps: 3}",
            "steps: 3",
            "steps is the length of a phase of a chain of schedulers; a single "
            "scheduler runs for the whole run",
        ),
        (
            "{op: SequentialLR, schedulers: [{op: LinearLR}, {op: StepLR, "
            "step_size: 2}], milestones: [0]}",
            "[0]",
            "milestones must be 1 increasing positive integers, one where each "
            "part after the first starts",
        ),
        (
            "[{op: LambdaLR, lr_lambda: 'no function'}]",
            "'no function'",
            "scheduler LambdaLR: lr_lambda must name a function as "
            "'package.module:function' (imported with --allow-import package)",
        ),
    ],
)
def test_chain_mistakes_are_located(
    tiny_spec, tmp_path: Path, schedule: str, at: str, message: str
) -> None:
    line = f"  scheduler: {schedule}"
    spec = tiny_spec(TRAIN + line + "\n")
    with pytest.raises(SpecError) as info:
        Trainer(spec, tmp_path / "run", progress=False)
    assert info.value.message == message
    number = spec.read_text().splitlines().index(line) + 1
    assert (info.value.line, info.value.column) == (number, line.index(at) + 1)
