"""Pass: ``tie`` keys -> parameters shared between modules of the model class.

Takes ``ctx.model_template`` and ``ctx.modules`` (every module of the model, with its
parameters' shapes); fills the model class's ``ties``: ``self.lm_head.weight =
self.transformer.wte.weight``, set at the end of ``__init__``. A target that is not a
parameter of the model, or of another shape, is an error at the ``tie`` key.
"""

from __future__ import annotations

from ...spec.errors import suggest
from ..ir import CompileContext, ModuleEntry

__all__ = ["run"]


def _parameters(entries: list[ModuleEntry]) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model by dotted path (a bare one by its own path)."""
    found: dict[str, tuple[int, ...]] = {}
    for entry in entries:
        for name, shape in zip(entry.params, entry.shapes):
            found[entry.path if entry.tensor else f"{entry.path}.{name}"] = shape
    return found


def run(ctx: CompileContext) -> None:
    assert ctx.model is not None and ctx.model_template is not None
    doc = ctx.document
    entries = {e.path: e for e in ctx.modules}
    everything = _parameters(ctx.modules)
    ties: list[tuple[str, str]] = []
    for node in ctx.model_template.nodes:
        for param, target in (node.tie or {}).items():
            at = (*node.path, "tie", param)
            own = entries[node.name]
            if param not in own.params:
                raise doc.error(
                    at,
                    f"{node.label} has no parameter {param!r} to tie"
                    + suggest(param, list(own.params))
                    + f"; its parameters: {', '.join(own.params) or 'none'}",
                    key=True,
                )
            if target not in everything:
                module, _, name = target.rpartition(".")
                if module in entries:
                    have = entries[module].params
                    reason = (
                        f"module {module!r} has no parameter {name!r}"
                        + suggest(name, list(have))
                        + f"; its parameters: {', '.join(have) or 'none'}"
                    )
                else:
                    reason = f"no parameter {target!r} in the model" + suggest(
                        target, list(everything)
                    )
                raise doc.error(at, f"{node.label}, tie {param}: {reason}")
            path = f"{node.name}.{param}"
            if target == path or target.startswith(f"{node.name}."):
                raise doc.error(
                    at, f"{node.label}, tie {param}: {target!r} is this node's own"
                )
            mine, theirs = own.shape_of(param), everything[target]
            if mine != theirs:
                raise doc.error(
                    at,
                    f"{node.label}, tie {param}: its shape {list(mine)} is not "
                    f"{target}'s {list(theirs)}",
                )
            ties.append((path, target))
    ctx.model.ties = ties
