"""Pass: the document -> the validated spec (JSON Schema, then pydantic).

Takes ``ctx.document``; gives ``ctx.spec``.
"""

from __future__ import annotations

from ...spec.validate import validate_document
from ..ir import CompileContext

__all__ = ["run"]


def run(ctx: CompileContext) -> None:
    ctx.spec = validate_document(ctx.document)
