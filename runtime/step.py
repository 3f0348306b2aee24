"""Parts of one optimizer step beside the loop's own: the eager reference of the
first compiled step and its check (compile_check.py), and gradient clipping with
the total norm it computes (logged with ``log: {grad_norm: true}``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .compile_check import check_compiled, eager_reference, tolerance
from .data import Batch
from .device import autocast

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["check_compiled_step", "clip_and_measure", "eager_step"]


def clip_and_measure(trainer: Trainer) -> None:
    """Clip the gradients (grad_clip) and keep their total norm (log: grad_norm;
    computed by the clipping when there is one, else on its own), unscaled."""
    t = trainer.settings.train
    if t.grad_clip is not None:
        trainer.scaler.unscale_(trainer.optimizer)
        norm = nn.utils.clip_grad_norm_(trainer.params, t.grad_clip)
        if t.log.grad_norm:
            trainer._grad_norm = norm.detach()
    elif t.log.grad_norm:  # the norm clipping would compute, unclipped
        trainer.scaler.unscale_(trainer.optimizer)
        grads = [p.grad for p in trainer.params if p.grad is not None]
        trainer._grad_norm = nn.utils.get_total_norm(grads).detach()


def eager_step(trainer: Trainer, group: list[Batch]) -> Any:
    """The step's forward and backward run eagerly, changing nothing."""
    t = trainer.settings.train

    def step() -> Tensor:
        losses = []
        for batch in group:
            with autocast(trainer.device, t.precision):
                outputs = trainer._forward(batch, trainer.network)
                loss, _ = trainer._loss(outputs, batch)
            scaled = loss if len(group) == 1 else loss / len(group)
            trainer.scaler.scale(scaled).backward()
            losses.append(loss.detach())
        return torch.stack(losses).mean()

    reduce = trainer.cluster.mean if trainer.cluster.distributed else None
    return eager_reference(
        step, trainer.network, trainer.params, trainer.device, reduce
    )


def check_compiled_step(trainer: Trainer, reference: Any, loss: Tensor) -> None:
    """Stop before the first update if the compiled step differs from eager."""
    trainer._check_compile = False
    options, precision = (
        trainer.settings.compile or {},
        trainer.settings.train.precision,
    )
    names = {id(p): name for name, p in trainer.network.named_parameters()}
    worst = check_compiled(
        reference,
        loss,
        [(names.get(id(p), "?"), p) for p in trainer.params],
        tol=tolerance(precision, trainer.device),
        backend=options.get("backend", "inductor"),
        precision=precision,
        reduce=trainer.cluster.mean if trainer.cluster.distributed else None,
    )
    if worst is None:  # overflowed: float16 checks the next step, with less scale
        trainer._check_compile = precision == "16-mixed"
        return
    trainer.log.message(
        f"compile check: the compiled first step matches eager (largest "
        f"difference {worst:.2g} of a gradient's norm)"
    )
