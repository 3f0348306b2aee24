"""Frozen parameters while training: BatchNorm layers kept in eval mode
(``frozen_bn: eval``), and ``unfreeze`` under DDP.

A frozen BatchNorm (its weight and bias do not take gradients) still updates its
running mean and variance in train mode; with ``frozen_bn: eval`` the loop puts
each BatchNorm whose parameters are all frozen back into eval mode every time it
puts the model into train mode, so it normalises with its stored statistics and
leaves them unchanged. A BatchNorm without parameters (``affine: false``) is not
frozen by any rule and trains as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .device import compile_model

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["frozen_norms", "keep_frozen_norms_eval", "rewrap", "wrap"]

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def frozen_norms(model: nn.Module) -> list[str]:
    """The names of the BatchNorm layers whose parameters are all frozen."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, _NORMS):
            continue
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            found.append(name)
    return found


def keep_frozen_norms_eval(model: nn.Module) -> None:
    """Put the frozen BatchNorm layers of a model in train mode into eval mode."""
    modules = dict(model.named_modules())
    for name in frozen_norms(model):
        modules[name].eval()


def wrap(trainer: Trainer) -> nn.Module:
    """The model the loop trains: DDP or FSDP over the network, or the network."""
    s = trainer.settings
    return trainer.cluster.wrap(
        trainer.network,
        block_classes={block.name for block in trainer.spec.compiled.blocks},
        all_outputs_trained=set(s.outputs) <= {term.output for term in s.losses},
    )


def rewrap(trainer: Trainer) -> None:
    """DDP registers the parameters that take gradients when it wraps the model:
    after an unfreeze the model is wrapped anew (and compiled again)."""
    trainer.model = trainer.network  # the old wrapper and its hooks go first
    trainer.model = wrap(trainer)
    if trainer.settings.compile is not None:
        compile_model(trainer.model, trainer.settings.compile)
