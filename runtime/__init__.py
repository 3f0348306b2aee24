"""nnspec.runtime: train a compiled spec as its ``train:`` section says."""

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import NonFiniteLossError, TrainError
from .loop import FitResult, Trainer

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "TrainError",
    "Trainer",
    "load_checkpoint",
    "save_checkpoint",
]
