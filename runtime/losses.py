"""The loss terms of a train section, resolved: classes, arguments, inputs.

A term is a torch.nn loss class or a custom ``package.module:Class`` (an
``nn.Module``) from an allowed package. Its own arguments sit beside ``op`` or under
``args:``; a list of numbers there is a float tensor, built on the run's device
(class weights, ``pos_weight``). By default the loss takes (output, target); with
``inputs:`` each forward argument is named: an output of the model or a data array.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..compiler.values import TensorValue
from ..spec.errors import SpecError, suggest
from ..spec.text import first_line
from ..spec.train import LossTerm
from ..spec.yaml_source import Path
from .custom import is_custom, resolve_custom

__all__ = [
    "BINARY_LOSSES",
    "CLASS_INDEX_LOSSES",
    "ELEMENTWISE_LOSSES",
    "LossSpec",
    "loss_classes",
    "resolve_loss",
]

# Losses whose target holds class indices: synthetic data draws integers for them.
CLASS_INDEX_LOSSES = frozenset({"CrossEntropyLoss", "NLLLoss", "MultiMarginLoss"})
BINARY_LOSSES = frozenset({"BCELoss", "BCEWithLogitsLoss"})
# Losses that compare element by element: output and target must have one shape
# (torch would broadcast [B, 1] against [B] with only a warning).
ELEMENTWISE_LOSSES = frozenset(
    {"MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss"}
)

Fail = Callable[..., SpecError]


def loss_classes() -> dict[str, type]:
    """torch.nn's loss classes by name."""
    return {
        name: obj
        for name, obj in vars(nn).items()
        if isinstance(obj, type)
        and issubclass(obj, nn.modules.loss._Loss)
        and not name.startswith("_")
    }


@dataclass
class LossSpec:
    """One loss term, resolved: ``weight * module(outputs[output], data[target])``,
    or with ``inputs`` ``weight * module(**{argument: output or data array})``."""

    output: str
    target: str | None  # the data array compared with the output (None: none)
    weight: float
    op: str
    module: nn.Module
    #: Forward argument -> output or data array; empty: (output, target).
    inputs: dict[str, str] = field(default_factory=dict)
    #: The names of ``inputs`` that are data arrays (not outputs).
    data: frozenset[str] = frozenset()
    #: Builds the module with its tensor arguments on a device (None: no tensors).
    rebuild: Callable[[torch.device], nn.Module] | None = None

    @property
    def data_names(self) -> list[str]:
        """The data arrays the term reads, in order."""
        if not self.inputs:
            return [self.target] if self.target is not None else []
        return list(dict.fromkeys(n for n in self.inputs.values() if n in self.data))

    def to(self, device: torch.device) -> None:
        """Put the loss (and its tensor arguments) on the run's device."""
        if self.rebuild is not None:
            self.module = self.rebuild(device)
        self.module.to(device)

    def arguments(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """What the loss's forward takes, by argument name."""
        return {
            arg: batch[name] if name in self.data else outputs[name]
            for arg, name in self.inputs.items()
        }

    def __call__(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> Tensor:
        if not self.inputs:
            assert self.target is not None
            return self.module(outputs[self.output], batch[self.target])
        return self.module(**self.arguments(outputs, batch))

    def problem(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> str | None:
        """Why the loss cannot take these outputs and data (None: it can), as a
        sentence naming each tensor's shape and dtype."""
        if not self.inputs:
            assert self.target is not None
            out, target = outputs[self.output], batch[self.target]
            what = (
                f"compare output {self.output!r} {_show(out)} with target "
                f"{self.target!r} {_show(target)}"
            )
            if self.op in ELEMENTWISE_LOSSES and out.shape != target.shape:
                return (
                    f"loss {self.op} cannot {what}: the shapes differ, and the "
                    "loss would broadcast"
                )
        else:
            given = self.arguments(outputs, batch)
            what = "take " + ", ".join(
                f"{arg} = {self.inputs[arg]!r} {_show(value)}"
                for arg, value in given.items()
            )
        try:
            self(outputs, batch)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            return f"loss {self.op} cannot {what}: {first_line(exc)}"
        return None


def resolve_loss(
    name: str,
    term: LossTerm,
    outputs: Mapping[str, TensorValue],
    fail: Fail,
    allow_imports: frozenset[str] = frozenset(),
) -> LossSpec:
    """The loss term of output ``name``, checked; mistakes at their spec lines."""
    path: Path = ("loss", name)
    if name not in outputs:
        raise fail(
            path,
            f"the model has no output {name!r}{suggest(name, list(outputs))}; "
            f"its outputs: {', '.join(outputs)}",
            key=True,
        )
    cls = _loss_class(term.op, (*path, "op"), fail, allow_imports)
    arguments = _arguments(term, cls, path, fail)
    tensors = {k: v for k, v in arguments.items() if _numbers(v)}
    plain = {k: v for k, v in arguments.items() if k not in tensors}
    for key, value in tensors.items():
        where = (*path, "args", key) if key in (term.args or {}) else (*path, key)
        try:
            tensor = torch.tensor(value, dtype=torch.float32)
        except (TypeError, ValueError) as exc:  # ragged lists
            raise fail(where, f"loss {term.op}: {key} is not a tensor: {exc}") from None
        if not bool(torch.isfinite(tensor).all()):
            raise fail(
                where, f"loss {term.op}: {key} holds a number that is not finite"
            )

    def build(device: torch.device) -> nn.Module:
        made = {
            k: torch.tensor(v, dtype=torch.float32, device=device)
            for k, v in tensors.items()
        }
        return cls(**plain, **made)

    try:
        module = build(torch.device("cpu"))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise fail(path, f"loss {term.op}: {first_line(exc)}") from None
    inputs, data, target = _inputs(name, term, cls, outputs, path, fail)
    return LossSpec(
        name,
        target,
        term.weight,
        term.op,
        module,
        inputs,
        data,
        build if tensors else None,
    )


def _loss_class(
    op: str, path: Path, fail: Fail, allow_imports: frozenset[str]
) -> type[nn.Module]:
    if is_custom(op):
        found = resolve_custom(op, allow_imports, "loss", path, fail)
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise fail(path, f"custom loss {op!r} is not an nn.Module class")
        return found
    known = loss_classes()
    if op not in known:
        raise fail(
            path,
            f"unknown loss {op!r}{suggest(op, list(known))}; known: "
            f"{', '.join(sorted(known))}, or package.module:Class (an allowed import)",
        )
    return known[op]


def _arguments(term: LossTerm, cls: type, path: Path, fail: Fail) -> dict[str, Any]:
    """The class's arguments: those beside ``op`` and those under ``args``, each a
    parameter of its constructor."""
    beside, under = term.arguments, term.args or {}
    for key in under:
        if key in beside:
            raise fail(
                (*path, "args", key),
                f"loss {term.op}: {key!r} is given twice, under args and beside it",
                key=True,
            )
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - classes have signatures
        return {**beside, **under}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        accepted = list(parameters)
        for key, where in [
            *((k, (*path, k)) for k in beside),
            *((k, (*path, "args", k)) for k in under),
        ]:
            if key not in parameters:
                raise fail(
                    where,
                    f"loss {term.op} has no argument {key!r}{suggest(key, accepted)}; "
                    f"its arguments: {', '.join(accepted)}",
                    key=True,
                )
    return {**beside, **under}


def _inputs(
    name: str,
    term: LossTerm,
    cls: type[nn.Module],
    outputs: Mapping[str, TensorValue],
    path: Path,
    fail: Fail,
) -> tuple[dict[str, str], frozenset[str], str | None]:
    """(inputs, the data arrays among them, the target) of a term."""
    if term.inputs is None:
        if term.target is None:
            raise fail(
                path,
                f"loss of {name!r} needs target: (the data array the output is "
                "compared with), or inputs: naming each argument of the loss",
            )
        return {}, frozenset(), term.target
    if term.target is not None:
        raise fail(
            (*path, "target"),
            "give target or inputs, not both: with inputs, name the target there "
            "({target: ARRAY})",
            key=True,
        )
    inputs = dict(term.inputs)
    try:
        forward = list(inspect.signature(cls.forward).parameters.values())[1:]
    except (TypeError, ValueError):  # pragma: no cover
        forward = []
    named = [p for p in forward if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if forward and not any(p.kind is p.VAR_KEYWORD for p in forward):
        accepted = [p.name for p in named]
        for arg in inputs:
            if arg not in accepted:
                raise fail(
                    (*path, "inputs", arg),
                    f"loss {term.op} takes no input {arg!r}{suggest(arg, accepted)}; "
                    f"its inputs: {', '.join(accepted)}",
                    key=True,
                )
    missing = [p.name for p in named if p.default is p.empty and p.name not in inputs]
    if missing:
        raise fail(
            (*path, "inputs"),
            f"inputs of loss {term.op} leave out {', '.join(missing)}; its inputs: "
            f"{', '.join(p.name for p in named)}",
            key=True,
        )
    if name not in inputs.values():
        raise fail(
            (*path, "inputs"),
            f"inputs of the loss of {name!r} do not use output {name!r}",
            key=True,
        )
    data = frozenset(n for n in inputs.values() if n not in outputs)
    target = inputs.get("target")
    if target not in data:
        target = next((n for n in inputs.values() if n in data), None)
    return inputs, data, target


def _numbers(value: Any) -> bool:
    """A (nested) non-empty list of numbers: a tensor argument."""
    if not isinstance(value, list) or not value:
        return False
    return all(
        _numbers(v)
        if isinstance(v, list)
        else isinstance(v, (int, float)) and not isinstance(v, bool)
        for v in value
    )


def _show(tensor: Tensor) -> str:
    return f"{list(tensor.shape)} ({str(tensor.dtype).removeprefix('torch.')})"
