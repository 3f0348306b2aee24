"""``python -m bench.first_step STAMP WHAT [ARGS ...]``: run WHAT in this process and
write to the file STAMP when its first optimizer step began: ``WALL CPU``, the
wall clock (``time.time()``, comparable with the parent's) and this process's CPU
time since it started (``time.process_time()``, all threads).

WHAT is one of

- ``nnspec ARGS``: the ``nnspec`` command (``nnspec train SPEC ...``);
- ``hand OUT``: bench/hand_digits.py, the hand-written script;
- ``torch``: the least a first step of that network takes: import torch, build
  the network (bench/digits_net.py), make its optimizer (in torch 2.13 the first
  construction of one imports ``torch._dynamo``), one forward and backward of a
  batch of 64 random images (the kernels' first use), one step.

The first step is the first ``optimizer.step()`` of an optimizer holding a
gradient (a global pre-step hook of torch.optim), so steps on optimizers without
gradients (nnspec steps a probe optimizer while it checks a schedule's arguments)
do not count. The hook imports torch before the command does; the command imports
it anyway, so that moves no time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

__all__ = ["main", "read_stamp"]


def read_stamp(path: Path) -> tuple[float, float]:
    """(wall clock, CPU seconds) of the first step, as the child wrote them."""
    wall, cpu = path.read_text(encoding="utf-8").split()
    return float(wall), float(cpu)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stamp, what, rest = Path(args[0]), args[1], args[2:]
    handles: list[Any] = []

    def first_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
            stamp.write_text(f"{time.time()!r} {time.process_time()!r}\n")
            handles.pop().remove()

    handles.append(register_optimizer_step_pre_hook(first_step))
    if what == "nnspec":
        from nnspec.cli import main as nnspec_main

        return nnspec_main(rest)
    if what == "hand":
        from .hand_digits import main as hand_main

        return hand_main(rest)
    if what == "torch":
        from .digits_net import digits_net

        model = digits_net()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.002)
        images, labels = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        return 0
    raise SystemExit(f"unknown WHAT {what!r}: nnspec, hand or torch")


if __name__ == "__main__":
    sys.exit(main())
