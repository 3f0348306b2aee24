"""torchvision's model classes as test references, on a torch whose torchvision ops are missing.

The torchvision wheel that matches this CPU torch installs, but its compiled extension
(``torchvision._C``: nms, roi_align, ...) does not load, and ``import torchvision`` fails in
``torchvision/_meta_registrations.py``: ``@torch.library.register_fake("torchvision::nms")``
raises ``RuntimeError: operator torchvision::nms does not exist``. The model classes
(``torchvision.models.resnet50`` and the rest) are plain Python over ``torch.nn`` and need
none of those operators, so the import is made with ``register_fake`` tolerant of operators
that do not exist, for the duration of the import only.

transformers and torchmetrics import torchvision whenever it is installed, so with this
torchvision their imports fail too: call :func:`torchvision_models` before importing them
(``tests/zoo/references.py`` does for transformers). A subprocess does not inherit that,
which is why torchvision is not part of the ``dev`` extra: it is installed by hand
(``pip install --no-deps torchvision==0.28.0``), and the tests that need it skip without it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch.library

__all__ = ["require_torchvision", "tolerant_import", "torchvision_models"]


def _missing_operator(error: RuntimeError) -> bool:
    message = str(error)
    return message.startswith("operator ") and message.endswith(" does not exist")


@contextlib.contextmanager
def _tolerant_register_fake() -> Iterator[None]:
    """``torch.library.register_fake`` skips operators that were never defined, until exit."""
    original = torch.library.register_fake

    def register_fake(
        op: Any, func: Callable[..., Any] | None = None, /, **kwargs: Any
    ) -> Any:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            try:
                return original(op, fn, **kwargs)
            except RuntimeError as error:
                if not _missing_operator(error):
                    raise
                return fn  # the operator is absent: nothing to give a fake kernel to

        return register if func is None else register(func)

    torch.library.register_fake = register_fake  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.library.register_fake = original


def tolerant_import(name: str) -> ModuleType | None:
    """Import module ``name`` with missing operators tolerated; None if it is not installed.

    A module imported before is returned as it is. A failed import leaves no partly
    imported modules of that package behind in ``sys.modules``.
    """
    if name in sys.modules:
        return sys.modules[name]
    top = name.partition(".")[0]
    if importlib.util.find_spec(top) is None:
        return None
    before = set(sys.modules)
    try:
        with _tolerant_register_fake(), warnings.catch_warnings():
            # torchvision warns that its image extension failed to load: not used here.
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:
        for module in set(sys.modules) - before:
            if module == top or module.startswith(top + "."):
                del sys.modules[module]
        raise


def torchvision_models() -> ModuleType | None:
    """``torchvision.models``, or None when torchvision is not installed."""
    return tolerant_import("torchvision.models")


def require_torchvision() -> ModuleType:
    """``torchvision.models``, or skip the calling test when torchvision is not installed."""
    import pytest

    models = torchvision_models()
    if models is None:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision)")
    return models
