"""nnspec.compiler: validated spec -> graph IR -> passes -> PyTorch source."""

from .pipeline import CompiledModel, compile_document, resolve_params

__all__ = ["CompiledModel", "compile_document", "resolve_params"]
