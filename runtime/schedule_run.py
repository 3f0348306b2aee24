"""Learning-rate schedules built for a run's optimizer, and put back on resume.

What ``scheduler:`` may say, and how it is checked, is in schedules.py; here the
checked spec becomes the torch scheduler of the run, with its lengths filled in
from the plan, and a resumed run's schedule follows a new plan's length.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..spec.train import SchedulerSpec
from ..spec.yaml_source import Path
from .custom import allowed_module
from .schedules import (
    LAMBDA_SCHEDULERS,
    chain,
    chain_op,
    filled_length,
    part_path,
    parts_of,
    schedule_interval,
    scheduler_classes,
)

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = [
    "follow_length",
    "length_state",
    "make_scheduler",
    "restore_scheduler",
    "run_length",
]


def run_length(trainer: Trainer) -> int:
    """The planned length of the run in the scheduler's interval (at least 1)."""
    if schedule_interval(trainer.settings.train) == "step":
        return max(trainer.plan.max_steps, 1)
    return max(trainer.plan.epochs, 1)


def make_scheduler(trainer: Trainer) -> Any:
    """The scheduler of the run, on its optimizer (None: a constant rate)."""
    s = trainer.settings
    spec = s.train.scheduler
    if s.scheduler is None or spec is None:
        return None
    if s.scheduler is ReduceLROnPlateau and trainer.val_data is None:
        raise s.error(
            ("scheduler", "op"),
            "ReduceLROnPlateau steps on a validation value, and this run has no "
            "validation data: give data.val or data.val_fraction",
        )
    length = run_length(trainer)
    parts = parts_of(spec)
    if parts is None:
        assert isinstance(spec, SchedulerSpec)
        # The resolved arguments: ReduceLROnPlateau's mode is filled in there.
        arguments = _arguments(trainer, spec, s.scheduler_args, ("scheduler",), length)
        return s.scheduler(trainer.optimizer, **arguments)
    op = chain_op(spec)
    milestones = s.scheduler_args.get("milestones", [])
    starts = [0, *milestones]
    built = []
    for i, part in enumerate(parts):
        if op == "SequentialLR":
            end = starts[i + 1] if i + 1 < len(starts) else max(length, starts[i] + 1)
            phase = end - starts[i]
        else:
            phase = length
        path = part_path(spec, i)
        arguments = _arguments(trainer, part, part.arguments, path, phase)
        built.append(scheduler_classes()[part.op](trainer.optimizer, **arguments))
    return chain(op, trainer.optimizer, built, s.scheduler_args)


def _arguments(
    trainer: Trainer,
    spec: SchedulerSpec,
    given: Mapping[str, Any],
    path: Path,
    length: int,
) -> dict[str, Any]:
    arguments = dict(given)
    length_arg = filled_length(spec)
    if length_arg is not None:
        arguments[length_arg] = length
    _check_schedule_length(trainer, spec, path, arguments, length)
    if spec.op in LAMBDA_SCHEDULERS:
        arguments["lr_lambda"] = _import_function(
            trainer, arguments["lr_lambda"], (*path, "lr_lambda")
        )
    return arguments


def _import_function(trainer: Trainer, name: str, path: Path) -> Callable[..., Any]:
    s = trainer.settings
    module, attr = allowed_module(
        name, trainer.allow_imports, f"lr_lambda {name!r}", path, s.error
    )
    module_name = name.partition(":")[0]
    function = getattr(module, attr, None)
    if not callable(function):
        raise s.error(path, f"module {module_name!r} has no function {attr!r}")
    return function


def _check_schedule_length(
    trainer: Trainer,
    spec: SchedulerSpec,
    path: Path,
    arguments: Mapping[str, Any],
    need: int,
) -> None:
    """OneCycleLR cannot step past its length: a run longer than the schedule
    is refused now, at the argument, rather than failing at that step."""
    if spec.op != "OneCycleLR":
        return
    total = arguments.get("total_steps")
    key = "total_steps"
    if total is None:
        key = "epochs"
        total = arguments.get("epochs", 0) * arguments.get("steps_per_epoch", 0)
    unit = f"{schedule_interval(trainer.settings.train)}s"
    if total < need:
        raise trainer.settings.error(
            (*path, key),
            f"OneCycleLR lasts {total} {unit}, but this run takes {need} "
            f"{unit}; leave total_steps out to fit the schedule to the run, or "
            f"make it at least {need}",
        )


# -- a resumed run with another plan -----------------------------------------------


def restore_scheduler(trainer: Trainer, state: dict[str, Any]) -> None:
    """Load a checkpoint's schedule. A length filled in from the plan follows the
    epochs/steps given now: the schedule built for the new plan keeps its length
    and goes on from this step (in a SequentialLR, the phase running now takes the
    rate the new plan gives it; other phases take their new length only)."""
    scheduler, s = trainer.scheduler, trainer.settings
    spec = s.train.scheduler
    assert scheduler is not None and spec is not None
    parts = parts_of(spec)
    if parts is None:
        planned = length_state(scheduler) if s.schedule_length_arg else {}
        scheduler.load_state_dict(state)
        if planned and planned != length_state(scheduler):
            follow_length(scheduler, planned)
        return
    built = scheduler._schedulers
    plans = [
        length_state(b) if filled_length(p) is not None else {}
        for b, p in zip(built, parts)
    ]
    scheduler.load_state_dict(state)
    running = None
    if isinstance(scheduler, torch.optim.lr_scheduler.SequentialLR):
        running = bisect.bisect_right(scheduler._milestones, scheduler.last_epoch)
    for i, (part, planned) in enumerate(zip(built, plans)):
        if not planned or planned == length_state(part):
            continue
        if i == running:
            follow_length(part, planned)
        else:
            for name, value in planned.items():
                setattr(part, name, value)


# The attributes of a scheduler that its length (total_steps, T_max) determines.
_LENGTH_ATTRIBUTES = ("total_steps", "_schedule_phases", "T_max")


def length_state(scheduler: Any) -> dict[str, Any]:
    return {
        name: copy.deepcopy(getattr(scheduler, name))
        for name in _LENGTH_ATTRIBUTES
        if hasattr(scheduler, name)
    }


def follow_length(scheduler: Any, planned: dict[str, Any]) -> None:
    """Give a restored scheduler the length of the new plan, and the learning rate
    the new plan has at the step it is at (as a fresh run of that plan would)."""
    for name, value in planned.items():
        setattr(scheduler, name, value)
    total = getattr(scheduler, "total_steps", None)
    if total is not None and scheduler.last_epoch > total:
        return  # the new plan ended before this step: the run stops at once
    closed_form = getattr(scheduler, "_get_closed_form_lr", None)
    if closed_form is not None:  # CosineAnnealingLR steps recursively otherwise
        for group, lr in zip(scheduler.optimizer.param_groups, closed_form()):
            group["lr"] = lr
        scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
        return
    # OneCycleLR computes its rate (and momentum) from the step alone: redo the step.
    count = scheduler._step_count
    scheduler.last_epoch -= 1
    scheduler.step()
    scheduler._step_count = count
