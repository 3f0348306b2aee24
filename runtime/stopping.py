"""Reasons to stop a run early: a signal (Ctrl-C, SIGTERM), or a monitored value
that stopped improving (``early_stop:``)."""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = ["EarlyStopping", "StopSignals"]


class StopSignals:
    """The first Ctrl-C (or SIGTERM) asks the loop to stop after the current step,
    with a checkpoint; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def step(self) -> None:
        """A step is done (in several processes, a vote happens here; see
        distributed.py)."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"


@dataclass
class EarlyStopping:
    """Stops the run when the monitored validation value has not improved by more
    than ``min_delta`` for ``patience`` validations in a row.

    Its counters are part of a checkpoint (``state``), so a resumed run stops at
    the validation an uninterrupted one would have stopped at."""

    monitor: str
    higher_is_better: bool
    patience: int
    min_delta: float = 0.0
    best: float | None = None  # the value the next one must beat by min_delta
    waited: int = 0  # validations since it last did
    stopped_at: int | None = None  # the step it stopped the run at

    def update(self, value: float, step: int) -> bool:
        """Take one validation's value; True when the run should stop now."""
        if math.isfinite(value) and (self.best is None or self._beats(value)):
            self.best, self.waited = value, 0
            return False
        self.waited += 1
        if self.waited >= self.patience:
            self.stopped_at = step
            return True
        return False

    def _beats(self, value: float) -> bool:
        assert self.best is not None
        if self.higher_is_better:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    @property
    def reason(self) -> str:
        best = "none" if self.best is None else f"{self.best:.4g}"
        return (
            f"early stopping: {self.monitor} did not improve on {best} by more "
            f"than {self.min_delta:g} in {self.patience} validations"
        )

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited}

    def restore(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.best, self.waited = state.get("best"), int(state.get("waited", 0))
