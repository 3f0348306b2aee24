"""A diagram as Graphviz DOT text, which Graphviz's ``dot`` draws as svg, png or pdf.

Every label is an HTML-like label built from escaped text, and every identifier a
quoted string, so that no name in a spec can add to the graph's structure.
"""

from __future__ import annotations

import html

from .diagram import Cluster, Diagram, Edge, check_layout, one_line
from .kinds import NodeKind

__all__ = ["to_dot"]


def _style(shape: str, style: str, fill: str, color: str) -> str:
    return f'shape={shape}, style="{style}", fillcolor="{fill}", color="{color}"'


_STYLE = {
    NodeKind.INPUT: _style("box", "rounded,filled", "#dff3df", "#5a9a5a"),
    NodeKind.OUTPUT: _style("box", "rounded,filled", "#dde8f8", "#5b7db5"),
    NodeKind.MODULE: _style("box", "rounded,filled", "#fff6dc", "#b39a5a"),
    NodeKind.FUNCTION: _style("box", "rounded,filled", "#f0f0f0", "#999999"),
    NodeKind.BLOCK: _style("box", "rounded,filled,bold", "#e6eefc", "#5b7db5"),
    NodeKind.REPEAT: _style("box", "rounded,filled,bold", "#e6eefc", "#5b7db5"),
    NodeKind.USE: _style("box", "rounded,filled,dashed", "#fff6dc", "#b35a5a"),
    NodeKind.SHARED: _style("cylinder", "filled", "#fbe3e3", "#b35a5a"),
    NodeKind.TENSOR: _style("box", "filled", "#fff6dc", "#b39a5a"),
}
_FROZEN = 'fillcolor="#e4e4e4", fontcolor="#555555"'
_CLUSTER_FILLS = ("#f4f7fc", "#eaf0f9", "#dfe8f5")


def _quote(text: str) -> str:
    """A DOT quoted string: backslashes and quotes escaped, on one line."""
    return '"' + one_line(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_html(text: str) -> str:
    """Text for a DOT HTML-like label: ``<>&"'`` as entities, on one line."""
    return html.escape(one_line(text), quote=True)


# A thin line between a bold title and the line below it, so that the title's
# descenders (underscores above all) do not touch the next line.
_GAP = '<br/><font point-size="3"> </font>'


def _html(title: str, subtitle: str, frozen: bool = False) -> str:
    text = f"<b>{_escape_html(title)}</b>"
    if subtitle or frozen:
        text += _GAP
    if subtitle:
        text += f'<br/><font point-size="9">{_escape_html(subtitle)}</font>'
    if frozen:
        text += '<br/><font point-size="8">frozen</font>'
    return f"<{text}>"


def to_dot(diagram: Diagram, rankdir: str = "TB", dpi: int | None = None) -> str:
    """The diagram as Graphviz DOT text, flowing ``rankdir``; ``dpi`` sets the
    resolution of raster output (.png)."""
    check_layout(rankdir, dpi)
    layout = f"rankdir={rankdir}, " + (f"dpi={dpi}, " if dpi is not None else "")
    lines = [
        f"digraph {_quote(diagram.name)} {{",
        '  graph [compound=true, fontname="Helvetica", fontsize=12, nodesep=0.3, '
        f"ranksep=0.3, labelloc=t, newrank=true, {layout}"
        f"label={_html(diagram.title, '')}];",
        '  node [fontname="Helvetica", fontsize=11, margin="0.12,0.04", height=0.3];',
        '  edge [fontname="Helvetica", fontsize=8, color="#666666", '
        'fontcolor="#444444", arrowsize=0.6];',
    ]
    _dot_cluster(diagram, diagram.root, lines, 1, 0)
    for edge in diagram.edges:
        lines.append("  " + _dot_edge(edge))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_cluster(
    diagram: Diagram, cluster: Cluster, lines: list[str], indent: int, level: int
) -> None:
    pad = "  " * indent
    for node_id in cluster.nodes:
        node = diagram.nodes[node_id]
        style = _STYLE[node.kind] + (", " + _FROZEN if node.frozen else "")
        label = _html(node.title, node.subtitle, node.frozen)
        lines.append(f"{pad}{_quote(node_id)} [{style}, label={label}];")
    for sub in cluster.clusters:
        fill = _CLUSTER_FILLS[min(level, len(_CLUSTER_FILLS) - 1)]
        lines.append(f"{pad}subgraph {_quote(sub.id)} {{")
        lines.append(
            f'{pad}  style="rounded,filled"; color="#8fa3c8"; fillcolor="{fill}"; '
            f"fontsize=11; label={_html(sub.title, sub.subtitle)};"
        )
        _dot_cluster(diagram, sub, lines, indent + 1, level + 1)
        lines.append(f"{pad}}}")


def _dot_edge(edge: Edge) -> str:
    src, dst = _quote(edge.src), _quote(edge.dst)
    if edge.kind == "shared":
        attrs = [
            'style=dashed, color="#b35a5a", dir=none',
            # Beside its first call; the other links do not move anything.
            "minlen=0" if edge.first else "constraint=false",
            f"lhead={_quote(edge.dst_cluster)}" if edge.dst_cluster else "",
        ]
        return f"{src} -> {dst} [{', '.join(a for a in attrs if a)}];"
    attrs = [f"label={_quote(edge.label)}"] if edge.label else []
    if edge.skip:
        attrs += ["minlen=0", "weight=8", 'color="#5b7db5"', 'fontcolor="#5b7db5"']
    if edge.rising:
        # Ranked from dst to src, drawn from src to dst: the edge rises.
        attrs.append("dir=back")
        return f"{dst} -> {src} [{', '.join(attrs)}];"
    return f"{src} -> {dst}" + (f" [{', '.join(attrs)}];" if attrs else ";")
