"""Loading and saving weights (``nnspec.compiler.weights``, where ``Spec.build`` finds
them), also importable from here, beside the rest of training."""

from ..compiler.weights import (
    LoadReport,
    WeightsError,
    load_weights,
    read_tensors,
    save_weights,
)

__all__ = ["LoadReport", "WeightsError", "load_weights", "read_tensors", "save_weights"]
