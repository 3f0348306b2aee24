"""What a picture of a model is made of, before it is written in any format.

``graph_build`` makes a ``Diagram`` from a summary; ``graph_dot`` and
``graph_mermaid`` write it. Labels are plain text on one line (``one_line``),
whatever a name or an op in the spec holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..compiler.values import Value
from .kinds import NodeKind

__all__ = [
    "RANKDIRS",
    "Cluster",
    "Diagram",
    "DiagramNode",
    "Edge",
    "check_layout",
    "one_line",
]


@dataclass
class DiagramNode:
    id: str
    kind: NodeKind  # INPUT, OUTPUT, SHARED, or the kind of the summary row drawn
    title: str
    subtitle: str = ""
    value: Value | None = None
    frozen: bool = False

    def __post_init__(self) -> None:
        self.kind = NodeKind(self.kind)  # the plain string is accepted too


@dataclass
class Cluster:
    id: str
    title: str
    subtitle: str
    nodes: list[str] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)

    def first_node(self) -> str | None:
        if self.nodes:
            return self.nodes[0]
        for sub in self.clusters:
            found = sub.first_node()
            if found:
                return found
        return None


@dataclass
class Edge:
    src: str
    dst: str
    label: str = ""
    kind: str = "data"  # data, shared
    rising: bool = False  # drawn upward: the decoder side of a U
    skip: bool = False  # a skip connection across the lowest point of a U
    dst_cluster: str | None = None  # a shared link to an opened block
    first: bool = False  # a shared link to the module's first call


@dataclass
class Diagram:
    """What to draw: nodes in forward order, nested clusters, edges."""

    name: str
    title: str
    nodes: dict[str, DiagramNode]
    root: Cluster
    edges: list[Edge]


# Line breaks (any Python or Unicode recognises) and other control characters: a
# label is one line of plain text, whatever a name or an op in the spec holds.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    return _CONTROL.sub(" ", text)


#: Directions a picture may flow in: top to bottom (the default), left to right, ...
RANKDIRS = ("TB", "LR", "BT", "RL")


def check_layout(rankdir: str, dpi: int | None) -> None:
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir {rankdir!r}: one of {', '.join(RANKDIRS)}")
    if dpi is not None and not 10 <= dpi <= 2400:
        raise ValueError(f"dpi {dpi}: between 10 and 2400")
