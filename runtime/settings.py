"""The train section made concrete: ``--set`` overrides applied, torch names resolved.

Every mistake found here is a SpecError at the position of the key in the spec (an
overridden key is reported at its nearest written ancestor, with the ``--set`` it
came from), with a suggestion where a known name is close.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..compiler.loaded import Spec
from ..compiler.values import TensorValue
from ..spec.errors import SpecError, suggest
from ..spec.sections import validate_train
from ..spec.train import CompileSpec, TrainSpec
from ..spec.yaml_source import Document, Path
from .losses import LossSpec, resolve_loss
from .metrics import MetricSpec, resolve_metrics
from .overrides import apply_overrides, show_value
from .schedules import (
    overridden_by_schedule,
    plateau_mode,
    resolve_scheduler,
    scheduler_classes,
)

__all__ = [
    "Settings",
    "apply_overrides",
    "optimizer_classes",
    "output_names",
    "resolve_settings",
    "scheduler_classes",
]


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
    spec: Spec,
    overrides: Mapping[str, Any] | None = None,
    *,
    allow_imports: Iterable[str] = (),
) -> Settings:
    """Check the spec's train section (with overrides) and resolve its torch names;
    custom losses and metrics import only from ``allow_imports``."""
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
    allowed = frozenset(allow_imports)
    losses = [
        resolve_loss(name, term, outputs, fail, allowed)
        for name, term in train.loss.items()
    ]
    metrics = resolve_metrics(train, outputs, losses, fail, allowed)
    optimizer, optimizer_args = _optimizer(train, fail)
    scheduler, scheduler_args, length_arg = resolve_scheduler(train, fail)
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
    plateau_mode(settings, fail)
    settings.warnings += overridden_by_schedule(settings)
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
    """The names of what forward returns, in order (``Spec.named_outputs``)."""
    return [name for name, _ in spec.named_outputs()]


def _output_values(spec: Spec) -> dict[str, TensorValue]:
    """The model's tensor outputs by name."""
    return {n: v for n, v in spec.named_outputs() if isinstance(v, TensorValue)}


def _classes(namespace: Any, base: type, exclude: set[str]) -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(namespace).items()
        if isinstance(obj, type)
        and issubclass(obj, base)
        and not name.startswith("_")
        and name not in exclude
    }


def optimizer_classes() -> dict[str, type]:
    """torch.optim's optimizers by name."""
    return _classes(torch.optim, torch.optim.Optimizer, {"Optimizer"})


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
