"""The losses of the steps since the last logged one, kept on the device.

The loop adds one 0-dim tensor a step and reads the window every ``log_every``
steps, before validations and before checkpoints: reading it is the one host sync,
and the place where a NaN or infinite loss is found.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from .errors import NonFiniteLossError
from .rundir import RunDir

__all__ = ["LossWindow"]


class LossWindow:
    """The losses of the steps since the last logged one, kept on the device: one
    tensor per step, no host sync, no copy. Reading it (every log_every steps, and
    before validations and checkpoints) is where a NaN or infinite loss is found,
    and the step it first appeared at.

    With several processes ``reduce`` averages the steps' losses over them, once,
    where the window is read: every rank then logs and checks the same values."""

    def __init__(
        self,
        device: torch.device,
        terms: int,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.device = device
        self.terms = terms
        self.losses: list[Tensor] = []  # 0-dim, one per step
        self.parts: list[Tensor] | None = [] if terms > 1 else None  # (terms,) each
        self.first_step = 1  # the step of losses[0]
        self.steps = 0
        self.reduce = reduce
        self.reduced = 0  # losses[:reduced] are the means over all processes
        self.samples = 0
        self.started = time.perf_counter()
        self.paused_for = 0.0

    def add(self, loss: Tensor, parts: Tensor | None, step: int, samples: int) -> None:
        # A list append: writing each loss into a preallocated tensor cost ~10 us a
        # step, 2% of a small model's step on a CPU.
        if self.steps == 0:
            self.first_step = step
        self.losses.append(loss)
        if self.parts is not None and parts is not None:
            self.parts.append(parts)
        self.steps += 1
        self.samples += samples

    def _losses(self) -> Tensor:
        if not self.losses:
            return torch.zeros(0, device=self.device)
        return torch.stack(self.losses)

    def _parts(self) -> Tensor | None:
        if self.parts is None:
            return None
        if not self.parts:
            return torch.zeros(0, self.terms, device=self.device)
        return torch.stack(self.parts)

    def _reduce(self) -> None:
        """Average the steps not yet averaged over all processes (a collective)."""
        begin, end = self.reduced, self.steps
        if begin == end or self.reduce is None:
            return
        rows = torch.stack(self.losses[begin:end])[:, None]
        if self.parts is not None:
            rows = torch.cat([rows, torch.stack(self.parts[begin:end])], dim=1)
        rows = self.reduce(rows.contiguous())
        self.losses[begin:end] = list(rows[:, 0])
        if self.parts is not None:
            self.parts[begin:end] = list(rows[:, 1:])
        self.reduced = end

    def check_finite(self, run: RunDir, saved_step: int | None) -> None:
        """Raise NonFiniteLossError if the loss was NaN or infinite at some step."""
        if not self.steps:
            return
        if self.reduce is not None:
            self._reduce()
        losses = self._losses()
        bad = (~torch.isfinite(losses)).nonzero()  # a host sync
        if not len(bad):
            return
        index = int(bad[0])
        step, value = self.first_step + index, float(losses[index])
        kept = (
            f"the last good checkpoint is {run.last} (step {saved_step})"
            if saved_step is not None
            else (
                f"the last good checkpoint is {run.last}"
                if run.last.exists()
                else "no checkpoint was written before it"
            )
        )
        raise NonFiniteLossError(
            f"the loss became {value} at step {step}; training stopped and {kept}. "
            "Lower the learning rate, clip gradients (grad_clip), or check the data",
            step,
        )

    def read(
        self, *, step: int, epoch: int, lr: float, names: list[str]
    ) -> dict[str, Any]:
        """The logged record of the window (a host sync), then an empty window."""
        if self.reduce is not None:
            self._reduce()
        means = [self._losses().mean()]
        parts = self._parts()
        if parts is not None:
            means += list(parts.mean(dim=0))
        values = torch.stack(means).tolist()
        elapsed = time.perf_counter() - self.started - self.paused_for
        record: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "loss": values[0],
            "lr": lr,
            "samples_per_s": self.samples / max(elapsed, 1e-9),
        }
        for name, value in zip(names, values[1:]):
            record[f"loss_{name}"] = value
        self.losses = []
        self.parts = [] if self.parts is not None else None
        self.steps = self.samples = self.reduced = 0
        self.started, self.paused_for = time.perf_counter(), 0.0
        return record

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent here (validation, checkpoints) does not count for throughput."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.paused_for += time.perf_counter() - begin

    def state(self) -> dict[str, Any]:
        """The window's step losses, for a checkpoint: a resumed run logs the same
        means as an uninterrupted one."""
        return {
            "first_step": self.first_step,
            "losses": self._losses(),
            "parts": self._parts(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.losses = list(state["losses"].to(self.device))
        if self.parts is not None and state["parts"] is not None:
            self.parts = list(state["parts"].to(self.device))
        self.first_step, self.steps = state["first_step"], len(self.losses)
        self.reduced = self.steps  # a checkpoint holds the averages
