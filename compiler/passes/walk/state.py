"""The shapes pass's state: one ``Walk`` per compile, one ``GraphState`` per graph walked.

Takes the document and the block templates; gives the errors every part of the
walk raises (``node_error``: at a node, or at one of its keys), the node count
against MAX_GRAPH_NODES, and the evaluation of spec values in a graph's scope.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ....spec.errors import SpecError
from ....spec.yaml_source import Document
from ...expressions import ExpressionError, Scope, Val, resolve_value
from ...ir import (
    BlockUse,
    Call,
    GraphResult,
    GraphTemplate,
    ModuleDef,
    NodeTemplate,
    Ref,
)
from ...names import Namespace
from ...op_table import MAX_ELEMENTS
from ...values import TensorValue, TupleValue, Value

__all__ = [
    "MAX_GRAPH_NODES",
    "MAX_REPEAT",
    "GraphState",
    "Walk",
    "bounded",
    "count",
    "elements",
    "evaluate",
    "grow",
    "node_error",
]

#: Largest repeat count.
MAX_REPEAT = 10_000
#: Most nodes a model may expand to, counting the nodes of every block instance and copy.
MAX_GRAPH_NODES = 200_000


@dataclass
class Walk:
    """What one compile's walk shares across graphs: the blocks, each block's uses,
    walks of blocks already made (by params and input shapes), the node count."""

    doc: Document
    blocks: dict[str, GraphTemplate]
    #: The graph walk itself (graph.walk_graph), which block instances recurse into.
    run_graph: Callable[
        [Walk, GraphTemplate, dict[str, Val], list[Value], bool], GraphResult
    ]
    uses: dict[str, list[BlockUse]] = field(default_factory=dict)
    cache: dict[Any, GraphResult] = field(default_factory=dict)
    expanded: int = 0  # nodes of the model so far, blocks and repeats expanded

    def file_of(self, path: tuple) -> str:
        """The base name of the file a node was written in (specs may extend others)."""
        return os.path.basename(self.doc.origin(path)[0])

    def line_of(self, path: tuple) -> int:
        return self.doc.where(path)[0]


@dataclass
class GraphState:
    """One graph being walked: the values so far and what its class will hold."""

    template: GraphTemplate
    symbolic: bool
    env: dict[str, Value | None] = field(default_factory=dict)
    modules: list[ModuleDef] = field(default_factory=list)
    module_by_name: dict[str, tuple[ModuleDef, NodeTemplate, dict[str, Val]]] = field(
        default_factory=dict
    )
    calls: list[Call] = field(default_factory=list)
    hoisted: list[tuple[str, Val]] = field(default_factory=list)
    attributes: list[tuple[str, ast.expr]] = field(default_factory=list)
    names: Namespace = field(default_factory=Namespace)
    scope: Scope | None = None
    size: int = 0
    #: Names read by repeat counts whose copies the class writes out one by one.
    fixed: set[str] = field(default_factory=set)
    #: Nodes left out by a false ``when:`` -> the input each passes through.
    aliases: dict[str, Ref] = field(default_factory=dict)
    #: What the next node takes by default when the last node was left out.
    previous_ref: Ref | None = None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def node_error(
    doc: Document, node: NodeTemplate, message: str, at: str | tuple | None = None
) -> SpecError:
    """An error about a node as a whole, at its ``at`` key when the spec writes one
    (``in`` for its inputs, an argument's name, or a path below the node such as
    ``("stride", 1)``), else at the node. Errors at a path of the spec's own are
    ``doc.error(path, message)``."""
    detail = ", ".join(f"{k}={_short(v)}" for k, v in list(node.kwargs.items())[:3])
    what = node.op_name + (f", {detail}" if detail else "")
    path = node.path
    below = at if isinstance(at, tuple) else (at,)
    if at is not None and (*node.path, *below) in doc.marks:
        path = (*node.path, *below)
    return doc.error(path, f"node {node.name!r} ({what}): {message}")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def elements(value: TensorValue) -> int:
    """Elements per sample: the product of the sizes besides the batch dimension."""
    total = 1
    for k, n in enumerate(value.shape):
        if k != value.batch_dim:
            total *= n
    return total


def grow(
    walk: Walk, state: GraphState, n: int, node: NodeTemplate, walked: bool
) -> None:
    """Count ``n`` more nodes in this graph (and in the model, unless ``walked``:
    a block instance walked just now was counted node by node)."""
    state.size += n
    if not walked:
        walk.expanded += n
    if walk.expanded > MAX_GRAPH_NODES:
        raise node_error(
            walk.doc,
            node,
            f"the model expands to more than {MAX_GRAPH_NODES} nodes (blocks and "
            "repeats included), the limit",
        )


def evaluate(
    walk: Walk,
    state: GraphState,
    raw: Any,
    path: tuple,
    extra: dict | None = None,
    *,
    what: str,
) -> Val:
    """The value of a spec value; errors name ``what`` (node and argument)."""
    assert state.scope is not None
    scope = state.scope.child(extra) if extra else state.scope
    try:
        return resolve_value(raw, scope)
    except ExpressionError as exc:
        raise walk.doc.error(path, f"{what}: {exc}") from None


def bounded(
    doc: Document, node: NodeTemplate, value: Value, context: str = ""
) -> Value:
    """The value, if no tensor in it has more than MAX_ELEMENTS elements per
    sample; else a located error, before any later node is made for it."""
    if isinstance(value, TupleValue):
        for item in value.items:
            if item is not None:
                bounded(doc, node, item, context)
    elif isinstance(value, TensorValue):
        total = elements(value)
        if total > MAX_ELEMENTS:
            raise node_error(
                doc,
                node,
                f"{context}its output {value.render()} would have {total} "
                "elements per sample, over the limit of 2**48",
            )
    return value
