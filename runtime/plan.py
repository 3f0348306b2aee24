"""Where a run starts and where it stops: its position, and its plan.

A run stops at the planned step: the end of ``epochs`` or ``steps``, whichever
comes first, counted from where it starts; a resumed run counts the steps left of
the epoch it is in with the global batch it has now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .data import Batches, Split

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["Plan", "Position", "describe", "make_plan", "plan_warnings"]


@dataclass
class Plan:
    steps_per_epoch: int  # optimizer steps in one pass over the training data
    max_steps: int  # where the run stops: epochs or steps, whichever comes first
    epochs: int  # epochs begun by then
    epochs_end: int | None = None  # the step where the epochs setting alone stops


@dataclass
class Position:
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # optimizer steps done in the current epoch
    step: int = 0  # optimizer steps done in all
    epoch_samples: int = 0  # samples of the current epoch's order used

    @classmethod
    def of(
        cls, checkpoint: dict[str, Any] | None, samples_per_step: int, samples: int
    ) -> Position:
        """Where a run starts: at 0, or where its checkpoint left off, counted in
        samples of the epoch's order, so a run resumed with another global batch
        (another number of processes) goes on from the same sample."""
        if checkpoint is None:
            return cls()
        epoch_step = checkpoint["epoch_step"]
        used = checkpoint.get("epoch_samples", epoch_step * samples_per_step)
        if used + samples_per_step > samples:  # no full step left of this epoch
            return cls(checkpoint["epoch"] + 1, 0, checkpoint["step"], 0)
        return cls(checkpoint["epoch"], epoch_step, checkpoint["step"], used)


def make_plan(trainer: Trainer, data: Batches) -> Plan:
    """Where the run stops, counted from where it starts: a run resumed with
    another global batch (another number of processes) finishes the epoch it
    is in with the steps that are left of it."""
    t, position = trainer.settings.train, trainer.position
    steps_per_epoch = data.full_batches // t.accumulate
    if steps_per_epoch == 0:
        need, size = trainer.samples_per_step, trainer.cluster.world.size
        product = "batch_size x accumulate"
        if size > 1:
            product = "batch_size x processes x accumulate"
        raise trainer.settings.error(
            ("data", "batch_size"),
            f"a step takes {product} = {need} samples, but there are "
            f"{len(data)} training samples",
        )
    # Steps left in the current epoch: steps_per_epoch less those done, unless
    # the global batch changed.
    rest = (len(data) - position.epoch_samples) // trainer.samples_per_step

    def through_epoch(epochs: int) -> int:
        if position.epoch >= epochs:
            return position.step
        return position.step + rest + (epochs - position.epoch - 1) * steps_per_epoch

    limits = []
    epochs_end = None
    if t.epochs is not None:
        epochs_end = through_epoch(t.epochs)
        limits.append(epochs_end)
    if t.steps is not None:
        limits.append(t.steps)
    max_steps = min(limits) if limits else through_epoch(1)
    if max_steps > position.step:
        after = max(0, max_steps - position.step - rest)
        epochs = position.epoch + 1 + math.ceil(after / steps_per_epoch)
    else:
        epochs = math.ceil(max_steps / steps_per_epoch)
    return Plan(steps_per_epoch, max_steps, epochs, epochs_end)


def plan_warnings(trainer: Trainer) -> list[str]:
    """Warnings for an override of epochs or steps that the other one makes
    irrelevant (the run stops at whichever comes first)."""
    s, t, plan = trainer.settings, trainer.settings.train, trainer.plan
    if plan.epochs_end is None or t.steps is None or plan.epochs_end == t.steps:
        return []
    key, other = (
        ("steps", "epochs") if plan.epochs_end < t.steps else ("epochs", "steps")
    )
    if key not in s.overrides:
        return []
    return [
        s.warning(
            (key,),
            f"{s.override_text(key)} has no effect: {other}: "
            f"{getattr(t, other)} ends the run first, at step {plan.max_steps}",
        )
    ]


def describe(trainer: Trainer, split: Split, *, resumed: bool) -> str:
    t, plan, position = trainer.settings.train, trainer.plan, trainer.position
    val = f", {len(split.val):,} validation" if split.val is not None else ""
    text = (
        f"{trainer.spec.name}: {len(split.train):,} training{val} samples; "
        f"{plan.steps_per_epoch} steps per epoch, {plan.max_steps} steps "
        f"({_count(plan.epochs, 'epoch')}); {trainer.device}, {t.precision}"
        + (", compiled" if trainer.settings.compile is not None else "")
    )
    if trainer.cluster.distributed:
        text += "; " + trainer.cluster.describe(t.data.batch_size, t.accumulate)
    if resumed:
        text += (
            f"\nresuming from {trainer.run.last}: step {position.step}, epoch "
            f"{position.epoch + 1}, step {position.epoch_step} of the epoch"
        )
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
