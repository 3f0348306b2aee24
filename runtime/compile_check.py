"""The compiled training step checked against eager, on the first batch of a run.

A backend can compute a wrong gradient without failing (torch 2.13's inductor on
the CPU returns zeros for conv -> relu -> max_pool2d), and a run then trains only
some of its layers while its loss still goes down. Before its first optimizer step
a compiled run therefore also runs that step's forward and backward eagerly, on the
same batches and with the same random numbers, and compares the loss and every
parameter's gradient. The eager step changes nothing: gradients, buffers (BatchNorm's
running statistics) and random states are put back, and the optimizer is not touched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import TrainError

__all__ = [
    "CompileMismatchError",
    "Reference",
    "check_compiled",
    "eager_random_numbers",
    "eager_reference",
    "tolerance",
]

# The largest relative difference (in norm) allowed between the compiled and the
# eager loss and gradients, by precision: a wrong gradient differs by ~100%.
TOLERANCES = {"32-true": 1e-3, "bf16-mixed": 5e-2, "16-mixed": 2e-2}
# float32 matmuls and convolutions use TF32 on CUDA (device.py).
CUDA_FLOAT32_TOLERANCE = 1e-2


class CompileMismatchError(TrainError):
    """The compiled step computed another loss or gradient than eager."""


@dataclass
class Reference:
    """The eager step: its loss (mean over the accumulated batches) and gradients."""

    loss: Tensor
    grads: list[Tensor | None]


def tolerance(precision: str, device: torch.device) -> float:
    if precision == "32-true" and device.type == "cuda":
        return CUDA_FLOAT32_TOLERANCE
    return TOLERANCES[precision]


def eager_random_numbers(options: dict[str, Any]) -> contextlib.AbstractContextManager:
    """Inductor draws dropout's random numbers as eager does while this is open, so
    that the checked and the eager step see the same masks (other backends run
    torch's own random ops already)."""
    if options.get("backend", "inductor") != "inductor":
        return contextlib.nullcontext()
    import torch._inductor.config

    return torch._inductor.config.patch(fallback_random=True)


def eager_reference(
    step: Callable[[], Tensor],
    network: nn.Module,
    params: Sequence[nn.Parameter],
    device: torch.device,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> Reference:
    """Run ``step`` (forward and backward, returning the loss) eagerly and keep its
    loss and gradients; gradients, buffers and random states are as before after it.
    ``reduce`` averages the gradients over the processes of a DDP run."""
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    buffers = [(b, b.detach().clone()) for b in network.buffers()]
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with (
            torch.random.fork_rng(devices=devices),
            torch.compiler.set_stance("force_eager"),
        ):
            loss = step().detach().float()
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    finally:
        for p, grad in zip(params, saved):
            p.grad = grad
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)
    if reduce is not None:
        present = [g for g in grads if g is not None]
        flat = reduce(
            torch.cat([loss.view(1), *[g.flatten().float() for g in present]])
        )
        loss = flat[0]
        offset = 1
        for g in present:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
    return Reference(loss, grads)


def check_compiled(
    reference: Reference,
    loss: Tensor,
    named_params: Sequence[tuple[str, nn.Parameter]],
    *,
    tol: float,
    backend: str,
    precision: str,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> float | None:
    """Compare the compiled step (``loss``, the parameters' gradients now) with the
    eager one; the largest relative difference, or CompileMismatchError naming the
    first parameter whose gradient differs. None when the eager loss or gradients
    are not finite (float16 gradients that overflowed): nothing to compare."""
    loss = loss.detach().float()
    if reduce is not None:
        loss = reduce(loss.clone().view(1))[0]
    rows: list[Tensor] = []  # per value: (difference, size), in float64
    missing: list[str] = []
    for (name, p), eager in zip(named_params, reference.grads):
        compiled = p.grad
        if (compiled is None) != (eager is None):
            missing.append(name)
            rows.append(torch.zeros(2, dtype=torch.float64, device=loss.device))
            continue
        if compiled is None or eager is None:
            rows.append(torch.zeros(2, dtype=torch.float64, device=loss.device))
            continue
        e, c = eager.double(), compiled.detach().double()
        size = torch.maximum(e.norm(), c.norm())
        rows.append(torch.stack([(c - e).norm(), size]))
    losses = torch.stack([loss.double(), reference.loss.double()])
    values = torch.cat([losses, *rows]).tolist() if rows else losses.tolist()  # a sync
    compiled_loss, eager_loss = values[0], values[1]
    names = [name for name, _ in named_params]
    way_out = (
        "Train with another backend (compile: {backend: aot_eager}) or without "
        "compiling (compile: false); compile: {check: false} skips this check"
    )
    what = f"torch.compile (backend {backend}) computes a wrong training step:"
    sizes = values[3::2]
    if not all(math.isfinite(v) for v in [eager_loss, *sizes]):
        return None
    if not _close(compiled_loss, eager_loss, abs(eager_loss), tol):
        raise CompileMismatchError(
            f"{what} on the first batch its loss is {compiled_loss:.6g}, eager's "
            f"{eager_loss:.6g} (tolerance {tol:.1%} at {precision}). {way_out}"
        )
    worst = abs(compiled_loss - eager_loss) / max(abs(eager_loss), 1e-12)
    floor = 1e-6 * max(sizes, default=0.0)  # gradients that are all but zero
    for i, name in enumerate(names):
        if name in missing:
            raise CompileMismatchError(
                f"{what} on the first batch {name} has a gradient in only one of "
                f"the compiled and the eager step. {way_out}"
            )
        diff, size = values[2 + 2 * i], values[3 + 2 * i]
        if not _close(diff, 0.0, size, tol, floor):
            share = diff / size if size else math.inf
            raise CompileMismatchError(
                f"{what} on the first batch the gradient of {name} differs from "
                f"eager's by {share:.1%} of its norm (tolerance {tol:.1%} at "
                f"{precision}). {way_out}"
            )
        if size > floor:
            worst = max(worst, diff / size)
    return worst


def _close(a: float, b: float, size: float, tol: float, floor: float = 1e-12) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= tol * size + floor
