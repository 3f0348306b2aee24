"""A custom op for the tests of runs of several processes:
`tests.runtime.distributed_ops:Probe`.

It passes its input through. The environment of the test's processes makes it
slow (``PROBE_SLEEP`` seconds per training step, so a signal lands mid-run) or
makes one rank fail (``PROBE_FAIL_RANK`` raises at its ``PROBE_FAIL_AT``-th
training step). The spec stays the same, so runs with and without them resume
from each other's checkpoints.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

__all__ = ["Probe"]


class Probe(nn.Module):
    """The identity, with the slowness or failure its environment asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type == "meta":
            return x
        self.calls += 1
        time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
        rank = os.environ.get("RANK")
        failing = rank is not None and rank == os.environ.get("PROBE_FAIL_RANK")
        if failing and self.calls == int(os.environ.get("PROBE_FAIL_AT", "1")):
            raise RuntimeError(f"injected failure on rank {rank}")
        return x
