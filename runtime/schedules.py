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

Checked here when the settings are resolved; built for the run in schedule_run.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..spec.train import SchedulerSpec, TrainSpec
from ..spec.yaml_source import Path

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "CHAINS",
    "LAMBDA_SCHEDULERS",
    "SCHEDULE_LENGTH",
    "chain",
    "chain_op",
    "filled_length",
    "overridden_by_schedule",
    "part_path",
    "parts_of",
    "plateau_mode",
    "resolve_scheduler",
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
LAMBDA_SCHEDULERS = ("LambdaLR", "MultiplicativeLR")


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
    parts = parts_of(spec)
    if parts is None:
        assert isinstance(spec, SchedulerSpec)
        return spec.interval
    outer = [spec] if isinstance(spec, SchedulerSpec) else []
    for part in (*outer, *parts):
        if "interval" in part.model_fields_set:
            return part.interval
    return "epoch"


def parts_of(spec: SchedulerSpec | list[SchedulerSpec]) -> list[SchedulerSpec] | None:
    """A chain's parts, or None for one scheduler."""
    if isinstance(spec, list):
        return spec
    return spec.schedulers


def chain_op(spec: SchedulerSpec | list[SchedulerSpec]) -> str:
    return "SequentialLR" if isinstance(spec, list) else spec.op


def part_path(spec: SchedulerSpec | list[SchedulerSpec], i: int) -> Path:
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
    if parts_of(spec) is None:
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
    return _resolvechain(spec, train, fail)


def _resolvechain(
    spec: SchedulerSpec | list[SchedulerSpec], train: TrainSpec, fail: Any
) -> tuple[type, dict[str, Any], None]:
    op = chain_op(spec)
    parts = parts_of(spec) or []
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
        path = part_path(spec, i)
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
    _probechain(op, parts, arguments, ("scheduler",), fail)
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
    length_arg = filled_length(spec)
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


def filled_length(spec: SchedulerSpec) -> str | None:
    """The argument filled in with the planned length, if the spec leaves it out."""
    if spec.op in SCHEDULE_LENGTH:
        name, alternatives = SCHEDULE_LENGTH[spec.op]
        if not any(a in spec.arguments for a in alternatives):
            return name
    return None


def _probe_arguments(spec: SchedulerSpec) -> dict[str, Any]:
    arguments = dict(spec.arguments)
    length_arg = filled_length(spec)
    if length_arg is not None:
        arguments[length_arg] = spec.steps or 100
    if spec.op in LAMBDA_SCHEDULERS and isinstance(arguments.get("lr_lambda"), str):
        arguments["lr_lambda"] = _constant  # the function is imported at the start
    return arguments


def _constant(step: int) -> float:
    return 1.0


def _check_lambda(spec: SchedulerSpec, path: Path, fail: Any) -> None:
    if spec.op not in LAMBDA_SCHEDULERS:
        return
    name = spec.arguments.get("lr_lambda")
    module, colon, attr = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not (module and colon and attr.isidentifier()):
        raise fail(
            (*path, "lr_lambda") if name is not None else path,
            f"scheduler {spec.op}: lr_lambda must name a function as "
            "'package.module:function' (imported with --allow-import package)",
        )


def _probechain(
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
        chained = chain(op, optimizer, built, arguments)
        _probe_schedule(op, chained, optimizer, {}, path, fail)
    except ArithmeticError as exc:
        raise fail(
            path, f"scheduler {op}: its parts divide by zero as they step ({exc})"
        ) from None
    except (TypeError, ValueError, IndexError) as exc:
        raise fail(path, f"scheduler {op}: {exc}") from None


def chain(
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
    if scheduler is None or parts_of(scheduler) is not None:
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
