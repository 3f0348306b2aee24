"""The train section made concrete: ``--set`` overrides applied, torch names resolved.

Every mistake found here is a SpecError at the position of the key in the spec (an
overridden key is reported at its nearest written ancestor, with the ``--set`` it
came from), with a suggestion where a known name is close.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnspec.api import Spec

from ..compiler.values import TensorValue
from ..spec.errors import SpecError, suggest
from ..spec.sections import validate_train
from ..spec.train import CompileSpec, TrainSpec
from ..spec.yaml_source import Document, Path
from .metrics import METRICS, Metric
from .overrides import apply_overrides, show_value

__all__ = [
    "LossSpec",
    "MetricSpec",
    "Settings",
    "apply_overrides",
    "loss_classes",
    "optimizer_classes",
    "output_names",
    "resolve_settings",
    "scheduler_classes",
]

# Scheduler arguments that, when omitted, are the planned length of the run.
# (Both are required by torch, so filling them in never overrides a torch default.)
SCHEDULE_LENGTH: dict[str, tuple[str, tuple[str, ...]]] = {
    "OneCycleLR": ("total_steps", ("total_steps", "epochs", "steps_per_epoch")),
    "CosineAnnealingLR": ("T_max", ("T_max",)),
}

# Losses whose target holds class indices: synthetic data draws integers for them.
CLASS_INDEX_LOSSES = frozenset({"CrossEntropyLoss", "NLLLoss", "MultiMarginLoss"})
BINARY_LOSSES = frozenset({"BCELoss", "BCEWithLogitsLoss"})
# Losses that compare element by element: output and target must have one shape
# (torch would broadcast [B, 1] against [B] with only a warning).
ELEMENTWISE_LOSSES = frozenset(
    {"MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss"}
)


@dataclass
class LossSpec:
    """One loss term, resolved: ``weight * module(outputs[output], data[target])``."""

    output: str
    target: str
    weight: float
    op: str
    module: nn.Module


@dataclass
class MetricSpec:
    """A metric of one output, logged as ``key`` (``val_accuracy``)."""

    output: str
    target: str
    metric: Metric
    key: str


@dataclass
class Settings:
    """Everything the loop needs from the train section, checked against torch."""

    spec: Spec
    train: TrainSpec
    doc: Document
    outputs: dict[str, TensorValue]
    losses: list[LossSpec]
    metrics: list[MetricSpec]
    optimizer: type[torch.optim.Optimizer]
    optimizer_args: dict[str, Any]
    scheduler: type | None
    scheduler_args: dict[str, Any]
    schedule_length_arg: str | None
    device: torch.device
    compile: dict[str, Any] | None
    overrides: dict[str, Any] = field(default_factory=dict)
    # Check the compiled first step against eager (compile: {check: false}: off).
    compile_check: bool = True
    # Overrides that another setting overrides in turn, as located warnings.
    warnings: list[str] = field(default_factory=list)

    def error(self, path: Path, message: str, *, key: bool = False) -> SpecError:
        """A SpecError at ``train.<path>`` in the spec."""
        return self.doc.error(("train", *path), message, key=key)

    def warning(self, path: Path, message: str) -> str:
        """``file:line:col: warning: message`` at ``train.<path>`` in the spec."""
        where = ("train", *path)
        line, column = self.doc.where(where, key=True)
        return f"{self.doc.origin(where)[0]}:{line}:{column}: warning: {message}"

    def override_text(self, key: str) -> str:
        """``--set key=value`` as given."""
        return f"--set {key}={show_value(self.overrides[key])}"

    @property
    def val_keys(self) -> list[str]:
        """The names of the values each validation logs."""
        keys = ["val_loss"]
        if len(self.losses) > 1:
            keys += [f"val_loss_{term.output}" for term in self.losses]
        return keys + [m.key for m in self.metrics]

    def higher_is_better(self, key: str) -> bool:
        return any(m.key == key and m.metric.higher_is_better for m in self.metrics)


def resolve_settings(
    spec: Spec, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Check the spec's train section (with overrides) and resolve its torch names."""
    doc = spec.compiled.document
    if not isinstance(doc.data, dict) or doc.data.get("train") is None:
        raise doc.error(
            ("train",),
            "the spec has no train: section; add one with at least data: and loss: "
            "(see docs/training.md)",
            key=True,
        )
    # The compiler validated the document: without overrides its train section is
    # read as validated; overrides change that section only, so only it is checked.
    train = spec.compiled.spec.train
    if overrides:
        doc = apply_overrides(doc, overrides)
        train = validate_train(doc)
    if train is None:  # pragma: no cover - a non-null train validates to a TrainSpec
        raise doc.error(("train",), "the train: section is empty")

    def fail(path: Path, message: str, *, key: bool = False) -> SpecError:
        return doc.error(("train", *path), message, key=key)

    outputs = _output_values(spec)
    losses = [_loss(name, term, outputs, fail) for name, term in train.loss.items()]
    metrics = _metrics(train, outputs, fail)
    optimizer, optimizer_args = _optimizer(train, fail)
    scheduler, scheduler_args, length_arg = _scheduler(train, fail)
    device = _device(train.device, fail)
    _check_precision(train.precision, device, fail)
    settings = Settings(
        spec=spec,
        train=train,
        doc=doc,
        outputs=outputs,
        losses=losses,
        metrics=metrics,
        optimizer=optimizer,
        optimizer_args=optimizer_args,
        scheduler=scheduler,
        scheduler_args=scheduler_args,
        schedule_length_arg=length_arg,
        device=device,
        compile=_compile_options(train.compile, fail),
        overrides=dict(overrides or {}),
        compile_check=not isinstance(train.compile, CompileSpec) or train.compile.check,
    )
    if train.monitor not in settings.val_keys:
        raise fail(
            ("monitor",),
            f"monitor {train.monitor!r} is not a validation value"
            f"{suggest(train.monitor, settings.val_keys)}; "
            f"validation logs: {', '.join(settings.val_keys)}",
        )
    _plateau_mode(settings, fail)
    settings.warnings += _overridden_overrides(settings)
    data = train.data
    if data.val is not None and data.val_fraction is not None:
        raise fail(
            ("data", "val_fraction"),
            "give either data.val or data.val_fraction, not both",
            key=True,
        )
    return settings


# -- outputs, losses, metrics ------------------------------------------------------


def output_names(spec: Spec) -> list[str]:
    """The names of what forward returns, in order: the dict's keys, or the names
    of the references (``head``, ``lstm.0``) for a tuple or a single tensor."""
    outputs = spec.compiled.model.outputs
    if outputs.kind == "dict":
        return list(outputs.keys)
    return [str(ref) for ref in outputs.refs]


def _output_values(spec: Spec) -> dict[str, TensorValue]:
    """The model's tensor outputs by name."""
    value = spec.compiled.result.output_value
    if isinstance(value, dict):
        values = list(value.values())
    elif spec.compiled.model.outputs.kind == "tuple":
        values = list(value.items)
    else:
        values = [value]
    pairs = zip(output_names(spec), values)
    return {name: v for name, v in pairs if isinstance(v, TensorValue)}


def _classes(namespace: Any, base: type, exclude: set[str]) -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(namespace).items()
        if isinstance(obj, type)
        and issubclass(obj, base)
        and not name.startswith("_")
        and name not in exclude
    }


def loss_classes() -> dict[str, type]:
    """torch.nn's loss classes by name."""
    return _classes(nn, nn.modules.loss._Loss, set())


def optimizer_classes() -> dict[str, type]:
    """torch.optim's optimizers by name."""
    return _classes(torch.optim, torch.optim.Optimizer, {"Optimizer"})


def scheduler_classes() -> dict[str, type]:
    """torch.optim.lr_scheduler's schedulers by name."""
    sched = torch.optim.lr_scheduler
    found = _classes(sched, sched.LRScheduler, {"LRScheduler"})
    found["ReduceLROnPlateau"] = sched.ReduceLROnPlateau
    return found


def _lookup(
    name: str, known: dict[str, type], what: str, path: Path, fail: Any
) -> type:
    if name in known:
        return known[name]
    raise fail(
        path,
        f"unknown {what} {name!r}{suggest(name, list(known))}; "
        f"known: {', '.join(sorted(known))}",
    )


def _check_arguments(
    cls: type,
    arguments: Mapping[str, Any],
    supplied: tuple[str, ...],
    what: str,
    path: Path,
    fail: Any,
) -> None:
    """Every argument must be a parameter of ``cls``'s constructor."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - torch classes have signatures
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [n for n in parameters if n not in supplied]
    for name in arguments:
        if name in supplied:
            raise fail(
                (*path, name), f"{what}: {name!r} is set by the trainer", key=True
            )
        if name not in parameters:
            raise fail(
                (*path, name),
                f"{what} has no argument {name!r}{suggest(name, accepted)}; "
                f"its arguments: {', '.join(accepted)}",
                key=True,
            )


def _loss(name: str, term: Any, outputs: dict[str, TensorValue], fail: Any) -> LossSpec:
    path = ("loss", name)
    if name not in outputs:
        raise fail(
            path,
            f"the model has no output {name!r}{suggest(name, list(outputs))}; "
            f"its outputs: {', '.join(outputs)}",
            key=True,
        )
    cls = _lookup(term.op, loss_classes(), "loss", (*path, "op"), fail)
    # The term's `weight` is its weight in the sum; the loss classes' own `weight`
    # (class weights, a tensor) cannot be written in YAML.
    _check_arguments(cls, term.arguments, (), f"loss {term.op}", path, fail)
    try:
        module = cls(**term.arguments)
    except (TypeError, ValueError) as exc:
        raise fail(path, f"loss {term.op}: {exc}") from None
    return LossSpec(name, term.target, term.weight, term.op, module)


def _metrics(
    train: TrainSpec, outputs: dict[str, TensorValue], fail: Any
) -> list[MetricSpec]:
    targets = {name: term.target for name, term in train.loss.items()}
    uses: dict[str, int] = {}
    for names in train.metrics.values():
        for metric in names:
            uses[metric] = uses.get(metric, 0) + 1
    found: list[MetricSpec] = []
    for output, names in train.metrics.items():
        if output not in outputs:
            raise fail(
                ("metrics", output),
                f"the model has no output {output!r}{suggest(output, list(outputs))}; "
                f"its outputs: {', '.join(outputs)}",
                key=True,
            )
        if output not in targets:
            raise fail(
                ("metrics", output),
                f"metrics of {output!r} compare it with its loss target, but loss "
                f"has no entry for {output!r}",
                key=True,
            )
        for i, metric in enumerate(names):
            if metric not in METRICS:
                raise fail(
                    ("metrics", output, i),
                    f"unknown metric {metric!r}{suggest(metric, list(METRICS))}; "
                    f"known: {', '.join(METRICS)}",
                )
            shape = outputs[output].shape
            if metric == "top5_accuracy" and len(shape) > 1 and shape[1] <= 5:
                raise fail(
                    ("metrics", output, i),
                    f"top5_accuracy of {output!r} would always be 1.0: it has "
                    f"{shape[1]} classes (dim 1), and a class is always among the "
                    "top 5 of at most 5; use accuracy",
                )
            key = f"val_{metric}" if uses[metric] == 1 else f"val_{output}_{metric}"
            found.append(MetricSpec(output, targets[output], METRICS[metric], key))
    return found


# -- optimizer, scheduler ----------------------------------------------------------


def _probe_parameters() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(2))]


def _optimizer(train: TrainSpec, fail: Any) -> tuple[type, dict[str, Any]]:
    spec = train.optimizer
    path = ("optimizer",)
    cls = _lookup(spec.op, optimizer_classes(), "optimizer", (*path, "op"), fail)
    arguments = spec.arguments
    _check_arguments(cls, arguments, ("params",), f"optimizer {spec.op}", path, fail)
    for i, group in enumerate(spec.param_groups or []):
        _check_arguments(
            cls,
            group.arguments,
            ("params",),
            f"parameter group {group.match!r} of {spec.op}",
            (*path, "param_groups", i),
            fail,
        )
    _check_finite(arguments, path, f"optimizer {spec.op}", fail)
    for i, group in enumerate(spec.param_groups or []):
        _check_finite(
            group.arguments, (*path, "param_groups", i), f"optimizer {spec.op}", fail
        )
    try:  # catches bad values (a negative lr) here, at the spec's line
        cls(_probe_parameters(), **arguments)
    except (TypeError, ValueError) as exc:
        raise fail(path, f"optimizer {spec.op}: {exc}") from None
    return cls, arguments


def _check_finite(
    arguments: Mapping[str, Any], path: Path, what: str, fail: Any
) -> None:
    """Numbers given to torch must be finite (torch takes ``lr: .inf``)."""
    for name, value in arguments.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise fail(
                    (*path, name),
                    f"{what}: {name} must be a finite number, received {v}",
                )


def _scheduler(
    train: TrainSpec, fail: Any
) -> tuple[type | None, dict[str, Any], str | None]:
    spec = train.scheduler
    if spec is None:
        return None, {}, None
    path = ("scheduler",)
    cls = _lookup(spec.op, scheduler_classes(), "scheduler", (*path, "op"), fail)
    arguments = spec.arguments
    _check_arguments(cls, arguments, ("optimizer",), f"scheduler {spec.op}", path, fail)
    _check_finite(arguments, path, f"scheduler {spec.op}", fail)
    length_arg = None
    probe_args = dict(arguments)
    if spec.op in SCHEDULE_LENGTH:
        name, alternatives = SCHEDULE_LENGTH[spec.op]
        if not any(a in arguments for a in alternatives):
            length_arg = name
            probe_args[name] = 100
    for name in _LEARNING_RATES:
        if name in arguments:
            _check_learning_rate(spec.op, name, arguments[name], path, fail)
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
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
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


def _overridden_overrides(settings: Settings) -> list[str]:
    """Warnings for overrides that change nothing, because another setting decides
    the value: ``--set optimizer.lr=...`` under OneCycleLR."""
    scheduler = settings.train.scheduler
    if scheduler is None:
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


def _plateau_mode(settings: Settings, fail: Any) -> None:
    """ReduceLROnPlateau's mode follows the monitor: ``max`` for accuracies."""
    if settings.scheduler is not torch.optim.lr_scheduler.ReduceLROnPlateau:
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


# -- device, precision, compile ----------------------------------------------------


def _device(text: str, fail: Any) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise fail(
            ("device",),
            f"device {text!r} is not auto, cpu, cuda or cuda:N"
            + suggest(text, ["auto", "cpu", "cuda"]),
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise fail(("device",), f"device {text!r}: CUDA is not available here")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise fail(
                ("device",),
                f"device {text!r}: there are {torch.cuda.device_count()} CUDA devices",
            )
    return device


def _check_precision(precision: str, device: torch.device, fail: Any) -> None:
    if precision == "16-mixed" and device.type != "cuda":
        raise fail(
            ("precision",),
            f"precision 16-mixed (float16 with a gradient scaler) needs a CUDA "
            f"device; this run is on {device.type}: use bf16-mixed there",
        )
    if (
        precision == "bf16-mixed"
        and device.type == "cuda"
        and not torch.cuda.is_bf16_supported()
    ):
        raise fail(
            ("precision",),
            "precision bf16-mixed: this GPU does not support bfloat16; use 16-mixed",
        )


_COMPILE_BACKENDS_HINT = "torch._dynamo.list_backends()"


def _compile_options(option: bool | CompileSpec, fail: Any) -> dict[str, Any] | None:
    if option is False:
        return None
    if option is True:
        option = CompileSpec()
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if option.backend not in backends:
        raise fail(
            ("compile", "backend"),
            f"unknown compile backend {option.backend!r}"
            f"{suggest(option.backend, backends)}; see {_COMPILE_BACKENDS_HINT}",
        )
    options: dict[str, Any] = {"backend": option.backend, "fullgraph": option.fullgraph}
    if option.mode is not None:
        options["mode"] = option.mode
    if option.dynamic is not None:
        options["dynamic"] = option.dynamic
    return options
