"""nnspec.compiler, the second stage: validated spec -> IR -> passes -> PyTorch source.

It may import ``nnspec.spec`` (and torch) only: never the runtime, the inspection
tools or the API. ``pipeline.PIPELINE`` lists its passes (``passes/``); the types
they share are in ``ir.py``, what it knows of each torch op in ``op_table.py``.
See docs/architecture.md.
"""

from .pipeline import CompiledModel, compile_document, resolve_params

__all__ = ["CompiledModel", "compile_document", "resolve_params"]
