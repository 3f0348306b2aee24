"""A diagram as a Mermaid flowchart, which GitHub and most Markdown viewers draw.

Identifiers are made of word characters only and labels are quoted text with
Mermaid's entity codes, so that no name in a spec can add to the chart's structure.
"""

from __future__ import annotations

import re

from .diagram import Cluster, Diagram, check_layout, one_line
from .kinds import NodeKind

__all__ = ["to_mermaid"]


# Mermaid entity codes for what could end a quoted label, start markup or an entity.
_MERMAID_ENTITIES = {
    "#": "#35;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "`": "#96;",
    "|": "#124;",
}
_MERMAID_SPECIAL = re.compile("[" + re.escape("".join(_MERMAID_ENTITIES)) + "]")


def _mermaid_text(text: str) -> str:
    """Plain text inside a quoted Mermaid label: on one line, with the characters
    that mean something to Mermaid or HTML as entity codes."""
    return _MERMAID_SPECIAL.sub(lambda m: _MERMAID_ENTITIES[m[0]], one_line(text))


_MERMAID_SHAPES = {
    NodeKind.INPUT: ('(["', '"])'),
    NodeKind.OUTPUT: ('(["', '"])'),
    NodeKind.SHARED: ('[("', '")]'),
    NodeKind.TENSOR: ('[/"', '"/]'),
    NodeKind.FUNCTION: ('("', '")'),
}


def to_mermaid(diagram: Diagram, rankdir: str = "TB") -> str:
    """The diagram as a Mermaid flowchart (GitHub and most Markdown viewers draw it)."""
    check_layout(rankdir, None)
    ids = _MermaidIds()
    lines = [f"flowchart {rankdir}", f"  %% {one_line(diagram.title)}"]
    _mermaid_cluster(diagram, diagram.root, lines, 1, ids)
    for edge in diagram.edges:
        src, dst = ids(edge.src), ids(edge.dst)
        if edge.kind == "shared":
            target = ids(edge.dst_cluster) if edge.dst_cluster else dst
            lines.append(f"  {src} -.- {target}")
        elif edge.label:
            lines.append(f'  {src} -->|"{_mermaid_text(edge.label)}"| {dst}')
        else:
            lines.append(f"  {src} --> {dst}")
    frozen = [ids(n.id) for n in diagram.nodes.values() if n.frozen]
    lines.append("  classDef frozen fill:#e4e4e4,color:#555555")
    if frozen:
        lines.append(f"  class {','.join(frozen)} frozen")
    return "\n".join(lines) + "\n"


class _MermaidIds:
    """Mermaid identifiers: word characters only, one per node or cluster."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.taken: set[str] = set()

    def __call__(self, key: str) -> str:
        if key not in self.ids:
            base = "n_" + re.sub(r"\W", "_", key)
            name, k = base, 1
            while name in self.taken:
                name, k = f"{base}_{k}", k + 1
            self.ids[key] = name
            self.taken.add(name)
        return self.ids[key]


def _mermaid_cluster(
    diagram: Diagram, cluster: Cluster, lines: list[str], indent: int, ids: _MermaidIds
) -> None:
    pad = "  " * indent
    for node_id in cluster.nodes:
        node = diagram.nodes[node_id]
        open_, close = _MERMAID_SHAPES.get(node.kind, ('["', '"]'))
        text = f"<b>{_mermaid_text(node.title)}</b>"
        if node.subtitle:
            text += f"<br/>{_mermaid_text(node.subtitle)}"
        if node.frozen:
            text += "<br/>frozen"
        lines.append(f"{pad}{ids(node_id)}{open_}{text}{close}")
    for sub in cluster.clusters:
        label = _mermaid_text(f"{sub.title}: {sub.subtitle}")
        lines.append(f'{pad}subgraph {ids(sub.id)}["{label}"]')
        _mermaid_cluster(diagram, sub, lines, indent + 1, ids)
        lines.append(f"{pad}end")
