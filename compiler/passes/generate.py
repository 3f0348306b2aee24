"""Pass: the classes -> Python source, the last pass.

Takes ``ctx.model`` and ``ctx.blocks``; gives ``ctx.imports`` (the modules the
generated file imports: those of allowed custom ops) and ``ctx.source``, printed by
``compiler.codegen.generate_source``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..codegen import generate_source
from ..ir import CallKind, ClassIR, CompileContext, ModuleDef

__all__ = ["run"]


def run(ctx: CompileContext) -> None:
    assert ctx.model is not None
    classes = [ctx.model, *ctx.blocks]
    ctx.imports = sorted(
        {
            m.op.import_module
            for cls in classes
            for m in _all_modules(cls)
            if m.op.import_module
        }
        | {
            c.callee.rsplit(".", 1)[0]
            for cls in classes
            for c in cls.calls
            if c.kind is CallKind.FUNCTION and not c.callee.startswith(("torch.", "F."))
        }
    )
    name = os.path.basename(ctx.document.path)
    ctx.source = generate_source(ctx.model, ctx.blocks, name, ctx.imports)


def _all_modules(cls: ClassIR) -> Iterator[ModuleDef]:
    """The class's modules, the copies of its repeats included (not a block
    instance's: those are its own class's)."""
    stack = list(cls.modules)
    while stack:
        module = stack.pop()
        yield module
        if module.block is None:
            stack.extend(module.children)
