"""``nnspec train --profile [STEPS]``: a torch.profiler trace of real training steps.

The profiler waits one step, warms up over the next, then records ``STEPS`` steps
of the run itself (data, forward, backward, optimizer, schedule) and writes them
as a Chrome trace to ``profile.json`` in the run directory (``profile-rank<R>.json``
per process with several), viewable in Perfetto or chrome://tracing. A run that
ends before the last recorded step writes what it recorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["StepTrace", "trace_path"]

#: Steps skipped, then run without recording, before the recorded ones.
WAIT, WARMUP = 1, 1


class StepTrace:
    """A profiler around the loop; ``step()`` after each optimizer step."""

    def __init__(self, path: Path, steps: int, device: torch.device) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule

        self.path = path
        self.written = False
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.profiler = profile(
            activities=activities,
            schedule=schedule(wait=WAIT, warmup=WARMUP, active=steps, repeat=1),
            on_trace_ready=self._write,
        )

    def __enter__(self) -> StepTrace:
        self.profiler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.profiler.stop()

    def step(self) -> None:
        self.profiler.step()

    def _write(self, profiler: Any) -> None:
        """Export to a temporary file beside the trace, then rename it into place."""
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        profiler.export_chrome_trace(str(partial))
        os.replace(partial, self.path)
        self.written = True


def trace_path(root: Path, world: Any) -> Path:
    """profile.json in the run directory; profile-rank<R>.json with several processes."""
    name = f"profile-rank{world.rank}.json" if world.size > 1 else "profile.json"
    return root / name
