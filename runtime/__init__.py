"""nnspec.runtime: train a compiled spec as its ``train:`` section says, and evaluate
and predict with a run's checkpoint.

A stage above the compiler: it may import ``nnspec.spec`` and ``nnspec.compiler``
(a loaded ``Spec`` is ``nnspec.compiler.loaded.Spec``), never ``nnspec.inspection``,
the API or the command line (whose train, evaluate and predict commands live in
``nnspec/``).

Its names load on first use (PEP 562): importing the package, or a module of it such
as ``nnspec.runtime.weights``, does not load the training loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each name of ``__all__`` is defined.
_HOMES = {
    "FitResult": "nnspec.runtime.loop",
    "NonFiniteLossError": "nnspec.runtime.errors",
    "TrainError": "nnspec.runtime.errors",
    "Trainer": "nnspec.runtime.loop",
    "load_checkpoint": "nnspec.runtime.checkpoint",
    "save_checkpoint": "nnspec.runtime.checkpoint",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
