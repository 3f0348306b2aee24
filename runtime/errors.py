"""Errors of a training run that are not mistakes in the spec text."""

from __future__ import annotations

__all__ = ["NonFiniteLossError", "RunError", "TrainError"]


class TrainError(Exception):
    """A run cannot go on: a failed compile, a diverged loss, a checkpoint that does
    not fit the model. ``nnspec train`` prints it as ``error: message``, status 1.

    ``command_line`` is the message in the command's terms (``--resume`` where the
    message says ``resume=True``), when the two differ.
    """

    def __init__(self, *args: object, command_line: str | None = None) -> None:
        super().__init__(*args)
        self.command_line = command_line

    def for_command_line(self) -> str:
        """The message as ``nnspec train`` prints it."""
        return getattr(self, "command_line", None) or str(self)


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite at ``step``; the last good checkpoint is kept."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class RunError(Exception):
    """A run directory, checkpoint or data file that cannot be used as asked (no such
    run, a missing array, a file that is not a tensor file): the user's mistake, which
    the command line prints as ``error: message``, status 2."""
