"""Errors of a training run that are not mistakes in the spec text."""

from __future__ import annotations

__all__ = ["NonFiniteLossError", "TrainError"]


class TrainError(Exception):
    """A run cannot go on: a failed compile, a diverged loss, a checkpoint that does
    not fit the model. ``nnspec train`` prints it as ``error: message``, status 1."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite at ``step``; the last good checkpoint is kept."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step
