"""Pass: graph templates -> walked graphs (every shape and constructor argument known).

Takes ``ctx.model_template``, ``ctx.block_templates``, ``ctx.params`` and the
model's declared inputs; gives ``ctx.result`` (the model's walk) and ``ctx.uses``
(each block's walks, one per use, for assemble). The walk evaluates every argument
(expressions may read shapes of earlier nodes), expands repeats, instantiates
blocks with symbolic sizes, infers constructor arguments from the shapes flowing in
(``in_channels``, ``in_features``, ...) and finds each node's output shape: by the
op's closed-form rule, else by running the op on the meta device. Its parts are in
``passes/walk/``.
"""

from __future__ import annotations

from ..expressions import const
from ..ir import CompileContext
from .walk.graph import model_inputs, walk_graph
from .walk.state import Walk

__all__ = ["run"]


def run(ctx: CompileContext) -> None:
    assert ctx.spec is not None and ctx.model_template is not None
    walk = Walk(ctx.document, ctx.block_templates, walk_graph)
    ctx.result = walk_graph(
        walk,
        ctx.model_template,
        {k: const(v) for k, v in ctx.params.items()},
        model_inputs(ctx.spec.inputs),
        False,
    )
    ctx.uses = walk.uses
