"""Python callbacks of a ``Trainer``: code of the caller's, run at points of the loop.

A callback is any object with some of these methods (``Callback`` has them all,
doing nothing, to subclass)::

    on_step(trainer, step, loss)         after each optimizer step; loss is a float
    on_validation(trainer, metrics)      after each validation: step, epoch, val_...
    on_checkpoint(trainer, path)         after checkpoints/last.pt is written

``trainer.stop(reason)`` ends the run after the current step, with a checkpoint,
as early stopping does. With several processes every process runs its callbacks:
``metrics`` are the same on all of them, ``loss`` is that process's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from .errors import TrainError

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["Callback", "Callbacks"]

_HOOKS = ("on_step", "on_validation", "on_checkpoint")


class Callback:
    """A callback doing nothing: subclass it and define the methods you need."""

    def on_step(self, trainer: Trainer, step: int, loss: float) -> None:
        pass

    def on_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        pass


class Callbacks:
    """The callbacks of a run, called in the order given."""

    def __init__(self, objects: Iterable[Any]) -> None:
        self.objects = list(objects)
        for obj in self.objects:
            if not any(callable(getattr(obj, hook, None)) for hook in _HOOKS):
                raise TrainError(
                    f"callback {obj!r} has none of the methods {', '.join(_HOOKS)}"
                )
        # Reading a step's loss is a host sync: only when a callback wants it.
        self.steps = [obj.on_step for obj in self.objects if _has(obj, "on_step")]
        self.validations = [
            obj.on_validation for obj in self.objects if _has(obj, "on_validation")
        ]
        self.checkpoints = [
            obj.on_checkpoint for obj in self.objects if _has(obj, "on_checkpoint")
        ]

    def step(self, trainer: Trainer, step: int, loss: Tensor) -> None:
        if self.steps:
            value = float(loss)
            for hook in self.steps:
                hook(trainer, step, value)

    def validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        for hook in self.validations:
            hook(trainer, dict(metrics))

    def checkpoint(self, trainer: Trainer, path: Path) -> None:
        for hook in self.checkpoints:
            hook(trainer, path)


def _has(obj: Any, hook: str) -> bool:
    return callable(getattr(obj, hook, None))
