"""Learning-rate schedules: the ``scheduler:`` of a train section, checked when the
settings are resolved and built for the run's optimizer.

``scheduler:`` is one torch scheduler, or a chain of them:

* a list, ``[{op: LinearLR, ..., steps: 100}, {op: CosineAnnealingLR}]``: each
  phase runs for its ``steps`` (scheduler steps: optimizer steps, or epochs with
  ``interval: epoch``), then the next one starts (a SequentialLR);
* ``{op: SequentialLR, schedulers: [...], milestones: [...]}``: the same, with the
  milestones written out instead of each phase's ``steps``;
* ``{op: ChainedScheduler, schedulers: [...]}``: every part at once, their factors
  multiplied.

A length left out (OneCycleLR's ``total_steps``, CosineAnnealingLR's ``T_max``) is
the planned length of its phase: its ``steps``, or for the last phase what is left
of the run. LambdaLR and MultiplicativeLR take ``lr_lambda: package.module:function``,
imported when the run starts, from an allowed package only (``--allow-import``).
"""

from __future__ import annotations

import bisect
import copy
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..spec.train import SchedulerSpec, TrainSpec
from ..spec.yaml_source import Path

if TYPE_CHECKING:
    from .loop import Trainer
    from .settings import Settings

__all__ = [
    "CHAINS",
    "SCHEDULE_LENGTH",
    "follow_length",
    "length_state",
    "make_scheduler",
    "overridden_by_schedule",
    "plateau_mode",
    "resolve_scheduler",
    "restore_scheduler",
    "schedule_interval",
    "scheduler_classes",
]

# Scheduler arguments that, when omitted, are the planned length of the run.
# (Both are required by torch, so filling them in never overrides a torch default.)
SCHEDULE_LENGTH: dict[str, tuple[str, tuple[str, ...]]] = {
    "OneCycleLR": ("total_steps", ("total_steps", "epochs", "steps_per_epoch")),
    "CosineAnnealingLR": ("T_max", ("T_max",)),
}
#: Schedulers made of other schedulers (``schedulers:``).
CHAINS = ("SequentialLR", "ChainedScheduler")
_UNITS = {"step": "optimizer steps", "epoch": "epochs"}
# Schedulers whose ``lr_lambda`` is a function, named as package.module:function.
_LAMBDA_SCHEDULERS = ("LambdaLR", "MultiplicativeLR")


def scheduler_classes() -> dict[str, type]:
    """torch.optim.lr_scheduler's schedulers by name."""
    sched = torch.optim.lr_scheduler
    found = {
        name: obj
        for name, obj in vars(sched).items()
        if isinstance(obj, type)
        and issubclass(obj, sched.LRScheduler)
        and not name.startswith("_")
        and name != "LRScheduler"
    }
    found["ReduceLROnPlateau"] = sched.ReduceLROnPlateau
    return found


def schedule_interval(train: TrainSpec) -> str:
    """``step`` or ``epoch``: when the schedule steps (a chain's first part that
    says, else ``epoch``)."""
    spec = train.scheduler
    if spec is None:
        return "epoch"
    parts = _parts(spec)
    if parts is None:
        assert isinstance(spec, SchedulerSpec)
        return spec.interval
    outer = [spec] if isinstance(spec, SchedulerSpec) else []
    for part in (*outer, *parts):
        if "interval" in part.model_fields_set:
            return part.interval
    return "epoch"


def _parts(spec: SchedulerSpec | list[SchedulerSpec]) -> list[SchedulerSpec] | None:
    """A chain's parts, or None for one scheduler."""
    if isinstance(spec, list):
        return spec
    return spec.schedulers


def _chain_op(spec: SchedulerSpec | list[SchedulerSpec]) -> str:
    return "SequentialLR" if isinstance(spec, list) else spec.op


def _part_path(spec: SchedulerSpec | list[SchedulerSpec], i: int) -> Path:
    if isinstance(spec, list):
        return ("scheduler", i)
    return ("scheduler", "schedulers", i)


# -- checked when the settings are resolved ---------------------------------------


def resolve_scheduler(
    train: TrainSpec, fail: Any
) -> tuple[type | None, dict[str, Any], str | None]:
    """The scheduler class, its arguments, and the length argument filled in from
    the plan (or None); a chain is checked part by part."""
    spec = train.scheduler
    if spec is None:
        return None, {}, None
    if _parts(spec) is None:
        assert isinstance(spec, SchedulerSpec)
        if spec.op in CHAINS:
            raise fail(
                ("scheduler", "op"),
                f"scheduler {spec.op} needs schedulers: the list of its parts",
            )
        if spec.steps is not None:
            raise fail(
                ("scheduler", "steps"),
                "steps is the length of a phase of a chain of schedulers; a single "
                "scheduler runs for the whole run",
                key=True,
            )
        return _resolve_one(spec, ("scheduler",), fail)
    return _resolve_chain(spec, train, fail)


def _resolve_chain(
    spec: SchedulerSpec | list[SchedulerSpec], train: TrainSpec, fail: Any
) -> tuple[type, dict[str, Any], None]:
    op = _chain_op(spec)
    parts = _parts(spec) or []
    if isinstance(spec, SchedulerSpec) and op not in CHAINS:
        raise fail(
            ("scheduler", "schedulers"),
            f"schedulers: is for SequentialLR and ChainedScheduler, not {op}",
            key=True,
        )
    if not parts:
        raise fail(("scheduler",), "a chain of schedulers needs at least one part")
    outer: dict[str, Any] = {}
    if isinstance(spec, SchedulerSpec):
        outer = spec.arguments
        allowed = {"milestones"} if op == "SequentialLR" else set()
        for name in outer:
            if name not in allowed:
                raise fail(
                    ("scheduler", name),
                    f"{op} takes no argument {name!r} here"
                    + ("; its parts take theirs" if not allowed else ""),
                    key=True,
                )
    interval = schedule_interval(train)
    for i, part in enumerate(parts):
        path = _part_path(spec, i)
        if part.op in CHAINS or part.op == "ReduceLROnPlateau" or part.schedulers:
            raise fail(
                (*path, "op"),
                f"{part.op} cannot be a part of a chain of schedulers",
            )
        if "interval" in part.model_fields_set and part.interval != interval:
            raise fail(
                (*path, "interval"),
                f"the parts of a chain step together: this one says {part.interval}, "
                f"an earlier one {interval}",
            )
        if op == "ChainedScheduler" and part.steps is not None:
            raise fail(
                (*path, "steps"),
                "the parts of a ChainedScheduler run at once, for the whole run; "
                "steps is for the phases of a list (a SequentialLR)",
                key=True,
            )
        last = i == len(parts) - 1
        phase_needs_steps = op == "SequentialLR" and "milestones" not in outer
        if phase_needs_steps and not last and part.steps is None:
            raise fail(
                path,
                f"phase {i + 1} of the chain needs steps: the number of "
                f"{_UNITS[interval]} it lasts before the next phase starts",
            )
        _resolve_one(part, path, fail)
    arguments: dict[str, Any] = {}
    if op == "SequentialLR":
        milestones = outer.get("milestones")
        if milestones is None:
            milestones = _milestones(parts)
        elif not (
            isinstance(milestones, list)
            and len(milestones) == len(parts) - 1
            and all(isinstance(m, int) and m > 0 for m in milestones)
            and milestones == sorted(set(milestones))
        ):
            raise fail(
                ("scheduler", "milestones"),
                f"milestones must be {len(parts) - 1} increasing positive integers, "
                "one where each part after the first starts",
            )
        arguments["milestones"] = milestones
    _probe_chain(op, parts, arguments, ("scheduler",), fail)
    return getattr(torch.optim.lr_scheduler, op), arguments, None


def _milestones(parts: Sequence[SchedulerSpec]) -> list[int]:
    total, found = 0, []
    for part in parts[:-1]:
        total += part.steps or 0
        found.append(total)
    return found


def _resolve_one(
    spec: SchedulerSpec, path: Path, fail: Any
) -> tuple[type, dict[str, Any], str | None]:
    from .settings import _check_arguments, _check_finite, _lookup

    cls = _lookup(spec.op, scheduler_classes(), "scheduler", (*path, "op"), fail)
    arguments = spec.arguments
    _check_arguments(cls, arguments, ("optimizer",), f"scheduler {spec.op}", path, fail)
    _check_finite(arguments, path, f"scheduler {spec.op}", fail)
    length_arg = _length_arg(spec)
    for name in _LEARNING_RATES:
        if name in arguments:
            _check_learning_rate(spec.op, name, arguments[name], path, fail)
    _check_lambda(spec, path, fail)
    probe_args = _probe_arguments(spec)
    try:
        optimizer = torch.optim.SGD(_probe_parameters(), lr=0.1)
        scheduler = cls(optimizer, **probe_args)
        _probe_schedule(spec.op, scheduler, optimizer, probe_args, path, fail)
    except ArithmeticError as exc:  # StepLR's step_size: 0, CosineAnnealingLR's T_max
        raise fail(
            path,
            f"scheduler {spec.op}: its arguments divide by zero as it steps ({exc})",
        ) from None
    except (TypeError, ValueError, IndexError) as exc:
        raise fail(path, f"scheduler {spec.op}: {exc}") from None
    return cls, arguments, length_arg


def _length_arg(spec: SchedulerSpec) -> str | None:
    """The argument filled in with the planned length, if the spec leaves it out."""
    if spec.op in SCHEDULE_LENGTH:
        name, alternatives = SCHEDULE_LENGTH[spec.op]
        if not any(a in spec.arguments for a in alternatives):
            return name
    return None


def _probe_arguments(spec: SchedulerSpec) -> dict[str, Any]:
    arguments = dict(spec.arguments)
    length_arg = _length_arg(spec)
    if length_arg is not None:
        arguments[length_arg] = spec.steps or 100
    if spec.op in _LAMBDA_SCHEDULERS and isinstance(arguments.get("lr_lambda"), str):
        arguments["lr_lambda"] = _constant  # the function is imported at the start
    return arguments


def _constant(step: int) -> float:
    return 1.0


def _check_lambda(spec: SchedulerSpec, path: Path, fail: Any) -> None:
    if spec.op not in _LAMBDA_SCHEDULERS:
        return
    name = spec.arguments.get("lr_lambda")
    module, colon, attr = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not (module and colon and attr.isidentifier()):
        raise fail(
            (*path, "lr_lambda") if name is not None else path,
            f"scheduler {spec.op}: lr_lambda must name a function as "
            "'package.module:function' (imported with --allow-import package)",
        )


def _probe_chain(
    op: str,
    parts: Sequence[SchedulerSpec],
    arguments: Mapping[str, Any],
    path: Path,
    fail: Any,
) -> None:
    optimizer = torch.optim.SGD(_probe_parameters(), lr=0.1)
    try:
        built = [
            scheduler_classes()[p.op](optimizer, **_probe_arguments(p)) for p in parts
        ]
        chain = _chain(op, optimizer, built, arguments)
        _probe_schedule(op, chain, optimizer, {}, path, fail)
    except ArithmeticError as exc:
        raise fail(
            path, f"scheduler {op}: its parts divide by zero as they step ({exc})"
        ) from None
    except (TypeError, ValueError, IndexError) as exc:
        raise fail(path, f"scheduler {op}: {exc}") from None


def _chain(
    op: str,
    optimizer: torch.optim.Optimizer,
    parts: list[Any],
    arguments: Mapping[str, Any],
) -> Any:
    sched = torch.optim.lr_scheduler
    if op == "SequentialLR":
        return sched.SequentialLR(optimizer, parts, milestones=arguments["milestones"])
    return sched.ChainedScheduler(parts, optimizer=optimizer)


def _probe_parameters() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(2))]


# Scheduler arguments that are learning rates: max_lr must be positive, the others
# at least 0 (a number, or a list of one per parameter group).
_LEARNING_RATES = ("max_lr", "base_lr", "eta_min", "min_lr")
# The scheduler steps taken on a probe optimizer while the spec is checked.
_PROBE_STEPS = 20


def _check_learning_rate(op: str, name: str, value: Any, path: Path, fail: Any) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue  # torch reports a wrong type when the probe builds it
        positive = name == "max_lr"
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            bound = "more than 0" if positive else "at least 0"
            raise fail(
                (*path, name),
                f"scheduler {op}: {name} must be a finite number {bound}, received {v}",
            )


def _probe_schedule(
    op: str,
    scheduler: Any,
    optimizer: torch.optim.Optimizer,
    arguments: Mapping[str, Any],
    path: Path,
    fail: Any,
) -> None:
    """Step the schedule a few times on a probe optimizer: arguments that divide by
    zero or make the learning rate negative or infinite fail here, at the spec's
    line, not at some step of the run."""
    if isinstance(scheduler, ReduceLROnPlateau):
        return  # steps on a validation value; its arguments are checked by torch
    steps = _PROBE_STEPS
    if op == "OneCycleLR":
        total = arguments.get("total_steps") or (
            arguments.get("epochs", 0) * arguments.get("steps_per_epoch", 0)
        )
        steps = min(steps, max(int(total) - 1, 0))
    for step in range(1, steps + 1):
        optimizer.step()
        scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise fail(
                path,
                f"scheduler {op}: its arguments make the learning rate {lr} at "
                f"step {step}; a learning rate must be a finite number, at least 0",
            )


# Schedulers that set the learning rate (and momentum) themselves, from arguments
# of their own: what they do to an optimizer argument given by --set.
_RATE_SETTERS = {
    "OneCycleLR": "sets the learning rate from its max_lr (max_lr / div_factor at "
    "the start); set scheduler.max_lr instead",
    "CyclicLR": "sets the learning rate from its base_lr and max_lr; set "
    "scheduler.base_lr instead",
}
_MOMENTUM_CYCLERS = frozenset({"OneCycleLR", "CyclicLR"})


def overridden_by_schedule(settings: Settings) -> list[str]:
    """Warnings for overrides that change nothing, because another setting decides
    the value: ``--set optimizer.lr=...`` under OneCycleLR."""
    scheduler = settings.train.scheduler
    if scheduler is None or _parts(scheduler) is not None:
        return []
    op = scheduler.op
    found = []
    for key in settings.overrides:
        parts = tuple(key.split("."))
        effect = None
        if parts == ("optimizer", "lr") and op in _RATE_SETTERS:
            effect = f"{op} {_RATE_SETTERS[op]}"
        elif (
            parts == ("optimizer", "momentum")
            and op in _MOMENTUM_CYCLERS
            and scheduler.arguments.get("cycle_momentum", True)
        ):
            effect = (
                f"{op} cycles the momentum between its base_momentum and "
                "max_momentum; set those instead"
            )
        if effect is not None:
            found.append(
                settings.warning(
                    parts, f"{settings.override_text(key)} has no effect: {effect}"
                )
            )
    return found


def plateau_mode(settings: Settings, fail: Any) -> None:
    """ReduceLROnPlateau's mode follows the monitor: ``max`` for accuracies."""
    if settings.scheduler is not ReduceLROnPlateau:
        return
    monitor = settings.train.monitor
    mode = "max" if settings.higher_is_better(monitor) else "min"
    given = settings.scheduler_args.get("mode")
    if given is None:
        settings.scheduler_args = {**settings.scheduler_args, "mode": mode}
    elif given != mode:
        better = "higher" if mode == "max" else "lower"
        raise fail(
            ("scheduler", "mode"),
            f"ReduceLROnPlateau mode {given!r} contradicts the monitor: "
            f"{monitor} is better {better}, so the mode is {mode!r} (leave mode out: "
            "it follows the monitor)",
        )


# -- built when the run starts ----------------------------------------------------


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
    parts = _parts(spec)
    if parts is None:
        assert isinstance(spec, SchedulerSpec)
        # The resolved arguments: ReduceLROnPlateau's mode is filled in there.
        arguments = _arguments(trainer, spec, s.scheduler_args, ("scheduler",), length)
        return s.scheduler(trainer.optimizer, **arguments)
    op = _chain_op(spec)
    milestones = s.scheduler_args.get("milestones", [])
    starts = [0, *milestones]
    built = []
    for i, part in enumerate(parts):
        if op == "SequentialLR":
            end = starts[i + 1] if i + 1 < len(starts) else max(length, starts[i] + 1)
            phase = end - starts[i]
        else:
            phase = length
        path = _part_path(spec, i)
        arguments = _arguments(trainer, part, part.arguments, path, phase)
        built.append(scheduler_classes()[part.op](trainer.optimizer, **arguments))
    return _chain(op, trainer.optimizer, built, s.scheduler_args)


def _arguments(
    trainer: Trainer,
    spec: SchedulerSpec,
    given: Mapping[str, Any],
    path: Path,
    length: int,
) -> dict[str, Any]:
    arguments = dict(given)
    length_arg = _length_arg(spec)
    if length_arg is not None:
        arguments[length_arg] = length
    _check_schedule_length(trainer, spec, path, arguments, length)
    if spec.op in _LAMBDA_SCHEDULERS:
        arguments["lr_lambda"] = _import_function(
            trainer, arguments["lr_lambda"], (*path, "lr_lambda")
        )
    return arguments


def _import_function(trainer: Trainer, name: str, path: Path) -> Callable[..., Any]:
    s = trainer.settings
    module_name, _, attr = name.partition(":")
    package = module_name.split(".")[0]
    if package not in trainer.allow_imports:
        raise s.error(
            path,
            f"lr_lambda {name!r} imports package {package!r}, which is not allowed; "
            f"allow it with --allow-import {package} (nnspec train) or "
            f"allow_imports=[{package!r}] (Trainer)",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise s.error(path, f"cannot import {module_name!r}: {exc}") from None
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
    parts = _parts(spec)
    if parts is None:
        planned = length_state(scheduler) if s.schedule_length_arg else {}
        scheduler.load_state_dict(state)
        if planned and planned != length_state(scheduler):
            follow_length(scheduler, planned)
        return
    built = scheduler._schedulers
    plans = [
        length_state(b) if _length_arg(p) is not None else {}
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
