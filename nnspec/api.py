"""The Python API: ``nnspec.load``, ``nnspec.loads`` and ``Spec``.

A spec is loaded and built by ``nnspec.compiler.loaded``, below the runtime, which
uses it too; ``Spec`` here adds what the inspection tools give (``summary``), which
sit above the compiler.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .compiler import loaded
from .compiler.loaded import confined
from .inspection.summary import ModelSummary, summarize

__all__ = ["Spec", "confined", "load", "loads"]


class Spec(loaded.Spec):
    """A validated, compiled spec. Build modules from it, read its source, or
    summarise it."""

    def summary(self, dtype: torch.dtype | None = None) -> ModelSummary:
        """Rows per node (shape, parameters, FLOPs) and totals, from one forward pass on
        the meta device: nothing is allocated. ``dtype`` builds the parameters in it."""
        return summarize(self.compiled, self.build(device="meta", dtype=dtype))


def loads(
    text: str,
    params: Mapping[str, Any] | None = None,
    *,
    path: str = "<string>",
    allow_imports: Iterable[str] | None = (),
    root: str | os.PathLike[str] | None = None,
) -> Spec:
    """Parse, validate and compile a spec from YAML text. Raises SpecError.

    ``allow_imports`` names the packages custom ops may import (None: none). With
    ``root``, the files the spec names (``extends:`` bases, ``weights:``) must be
    inside that folder, symbolic links followed.
    """
    spec = loaded.loads(text, params, path=path, allow_imports=allow_imports, root=root)
    return Spec(spec.compiled, spec.root)


def load(
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    allow_imports: Iterable[str] | None = (),
    root: str | os.PathLike[str] | None = None,
) -> Spec:
    """Parse, validate and compile a spec file. Raises SpecError.

    ``allow_imports`` names the packages custom ops may import (None: none). With
    ``root``, the spec and every file it names (``extends:`` bases, ``weights:``) must
    be inside that folder, symbolic links followed.
    """
    spec = loaded.load(path, params, allow_imports=allow_imports, root=root)
    return Spec(spec.compiled, spec.root)
