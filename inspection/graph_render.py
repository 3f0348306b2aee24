"""Draw a model: its summary as a diagram, written as Graphviz DOT or Mermaid.

Inputs, nodes and outputs are boxes; the edges between them carry the shapes that
flow. Blocks (and repeats) open as labelled clusters down to ``depth`` levels, and
stay single boxes below that. A module called more than once (``use:``) appears as
one cylinder joined by dashed lines to each of its calls.

Encoder-decoder models get the layout their papers draw: when skip connections
cross a part of lower resolution, the nodes after the lowest point are drawn rising
beside those before it, each skip joining its partner at the same height; for a
U-Net that is the U.
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .summary import ModelSummary, NodeSummary
from .summary_table import format_count
from ..compiler.values import TensorValue, TupleValue, Value

__all__ = [
    "FORMATS",
    "Diagram",
    "GraphvizError",
    "build_diagram",
    "render_graph",
    "to_dot",
    "to_mermaid",
]

#: File suffixes ``render_graph`` writes; svg, png and pdf are drawn by Graphviz's dot.
FORMATS = ("svg", "png", "pdf", "dot", "mmd")


class GraphvizError(Exception):
    """Graphviz's ``dot`` is missing or failed."""


@dataclass
class DiagramNode:
    id: str
    kind: str  # input, output, module, function, block, repeat, use, shared
    title: str
    subtitle: str = ""
    value: Value | None = None
    frozen: bool = False


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


@dataclass(frozen=True)
class _Source:
    node: str
    value: Value | None


_Env = dict[str, "_Source | list[_Source]"]


class _Builder:
    def __init__(self, summary: ModelSummary, depth: int) -> None:
        self.summary = summary
        self.depth = depth
        self.nodes: dict[str, DiagramNode] = {}
        self.edges: list[Edge] = []
        self.callers: dict[str, tuple[str, Cluster, bool]] = {}
        self.uses: dict[str, list[str]] = {}
        self.rows: dict[str, NodeSummary] = {}

    def add(self, node: DiagramNode, cluster: Cluster) -> None:
        self.nodes[node.id] = node
        cluster.nodes.append(node.id)

    def build(self) -> Diagram:
        s = self.summary
        root = Cluster("", s.name, "")
        env: _Env = {}
        for name, value in s.inputs:
            node_id = f"input:{name}"
            self.add(DiagramNode(node_id, "input", name, value.render(), value), root)
            env[name] = _Source(node_id, value)
        self.walk(s.rows, env, root, self.depth)
        for out in s.outputs:
            node_id = f"output:{out.key}"
            title = out.key if s.outputs_kind == "dict" else "output"
            if s.outputs_kind == "tuple":
                title = f"output {s.outputs.index(out)}"
            self.add(DiagramNode(node_id, "output", title, "", out.value), root)
            self.connect(self.resolve(env, out.ref), node_id)
        self.link_shared(root)
        t = s.totals
        title = (
            f"{s.name}: {t.params:,} parameters, "
            f"{format_count(t.flops_forward)} FLOPs forward per sample"
        )
        diagram = Diagram(s.name, title, self.nodes, root, self.edges)
        _shape_u(diagram)
        return diagram

    def walk(
        self, rows: list[NodeSummary], env: _Env, cluster: Cluster, depth: int
    ) -> None:
        for row in rows:
            self.rows[row.name] = row
            sources = [self.resolve(env, ref) for ref in row.inputs]
            if row.kind in ("block", "repeat") and row.children and depth > 0:
                sub = Cluster(f"cluster_{row.name}", row.node, _op_text(row))
                cluster.clusters.append(sub)
                names = row.input_keys or row.graph_inputs
                inner: _Env = dict(zip(names, sources))
                self.walk(row.children, inner, sub, depth - 1)
                outs = [self.resolve(inner, ref) for ref in row.graph_outputs]
                env[row.node] = outs if row.returns_tuple else outs[0]
                if row.module is not None:
                    self.callers[row.module] = (sub.id, cluster, True)
                continue
            kind = row.kind
            subtitle = _op_text(row)
            if row.params and row.kind != "use":
                subtitle += f" · {format_count(row.params)} params"
            node = DiagramNode(
                row.name, kind, row.node, subtitle, row.value, row.trainable == "frozen"
            )
            self.add(node, cluster)
            keys = row.input_keys or [""] * len(sources)
            seen = set()
            for key, ref, source in zip(keys, row.inputs, sources):
                if (key, ref) not in seen:  # x passed twice to a node: one edge
                    seen.add((key, ref))
                    self.connect(source, row.name, key)
            env[row.node] = _Source(row.name, row.value)
            if row.kind == "use" and row.module is not None:
                self.uses.setdefault(row.module, []).append(row.name)
            elif row.module is not None:
                self.callers[row.module] = (row.name, cluster, False)

    @staticmethod
    def resolve(env: _Env, ref: str) -> _Source:
        name, *rest = ref.split(".")
        found = env[name]
        index = [int(k) for k in rest]
        if isinstance(found, list):
            found = found[index.pop(0)]
        value = found.value
        for k in index:
            value = value.items[k] if isinstance(value, TupleValue) else None
        return _Source(found.node, value)

    def connect(self, source: _Source, dst: str, key: str = "") -> None:
        """An edge labelled with the shape, and the input's name for in: {key: ref}."""
        label = source.value.render() if source.value is not None else ""
        self.edges.append(Edge(source.node, dst, f"{key} {label}" if key else label))

    def link_shared(self, root: Cluster) -> None:
        """One cylinder per module called more than once, joined to every call."""
        for path, uses in self.uses.items():
            if path not in self.callers:
                continue
            original, cluster, opened = self.callers[path]
            row = next(
                (r for r in self.rows.values() if r.module == path and r.kind != "use"),
                None,
            )
            node_id = f"shared:{path}"
            subtitle = f"{row.op} module" if row is not None else "module"
            if row is not None and row.params:
                subtitle += f" · {format_count(row.params)} params"
            subtitle += f" · {len(uses) + 1} calls"
            self.add(DiagramNode(node_id, "shared", path, subtitle), cluster)
            if opened:
                sub = _find_cluster(root, original)
                first = sub.first_node() if sub is not None else None
                if first is not None:
                    self.edges.append(
                        Edge(
                            node_id,
                            first,
                            kind="shared",
                            dst_cluster=original,
                            first=True,
                        )
                    )
            else:
                self.edges.append(Edge(node_id, original, kind="shared", first=True))
            for use in uses:
                self.edges.append(Edge(node_id, use, kind="shared"))


def _find_cluster(cluster: Cluster, cluster_id: str) -> Cluster | None:
    if cluster.id == cluster_id:
        return cluster
    for sub in cluster.clusters:
        found = _find_cluster(sub, cluster_id)
        if found is not None:
            return found
    return None


def _op_text(row: NodeSummary) -> str:
    if row.kind == "repeat":
        return f"{row.op} ×{len(row.children)}"
    if row.kind == "use":
        return f"{row.op} · weights of {row.module}"
    return row.op


def _resolution(value: Value | None) -> int | None:
    """Spatial size of a (B, C, *spatial) tensor: the product of the spatial dims."""
    if not isinstance(value, TensorValue) or value.batch_dim != 0 or value.rank < 3:
        return None
    return math.prod(value.shape[2:])


def _shape_u(diagram: Diagram) -> None:
    """Mark the edges of an encoder-decoder's rising side, and its skip connections."""
    order = {node_id: k for k, node_id in enumerate(diagram.nodes)}
    res = [_resolution(n.value) for n in diagram.nodes.values()]
    known = [r for r in res if r is not None]
    if not known:
        return
    lowest = min(known)
    bottom = max(k for k, r in enumerate(res) if r == lowest)
    skips = []
    for edge in diagram.edges:
        if edge.kind != "data":
            continue
        a, b = order[edge.src], order[edge.dst]
        ends = [r for r in (res[a], res[b]) if r is not None]
        between = [r for r in res[a + 1 : b] if r is not None]
        if a < bottom < b and ends and between and min(between) < min(ends):
            skips.append(edge)
    if not skips:
        return
    for edge in diagram.edges:
        if edge.kind == "data":
            edge.skip = edge in skips
            edge.rising = not edge.skip and order[edge.dst] > bottom


# -- DOT ---------------------------------------------------------------------------

_STYLE = {
    "input": 'shape=box, style="rounded,filled", fillcolor="#dff3df", color="#5a9a5a"',
    "output": 'shape=box, style="rounded,filled", fillcolor="#dde8f8", color="#5b7db5"',
    "module": 'shape=box, style="rounded,filled", fillcolor="#fff6dc", color="#b39a5a"',
    "function": 'shape=box, style="rounded,filled", fillcolor="#f0f0f0", color="#999999"',
    "block": 'shape=box, style="rounded,filled,bold", fillcolor="#e6eefc", color="#5b7db5"',
    "repeat": 'shape=box, style="rounded,filled,bold", fillcolor="#e6eefc", color="#5b7db5"',
    "use": 'shape=box, style="rounded,filled,dashed", fillcolor="#fff6dc", color="#b35a5a"',
    "shared": 'shape=cylinder, style="filled", fillcolor="#fbe3e3", color="#b35a5a"',
}
_FROZEN = 'fillcolor="#e4e4e4", fontcolor="#555555"'
_CLUSTER_FILLS = ("#f4f7fc", "#eaf0f9", "#dfe8f5")


# Line breaks (any Python or Unicode recognises) and other control characters: a
# label is one line of plain text, whatever a name or an op in the spec holds.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text)


def _quote(text: str) -> str:
    """A DOT quoted string: backslashes and quotes escaped, on one line."""
    return '"' + _one_line(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_html(text: str) -> str:
    """Text for a DOT HTML-like label: ``<>&"'`` as entities, on one line."""
    return html.escape(_one_line(text), quote=True)


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


#: Directions a picture may flow in: top to bottom (the default), left to right, ...
RANKDIRS = ("TB", "LR", "BT", "RL")


def _check_layout(rankdir: str, dpi: int | None) -> None:
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir {rankdir!r}: one of {', '.join(RANKDIRS)}")
    if dpi is not None and not 10 <= dpi <= 2400:
        raise ValueError(f"dpi {dpi}: between 10 and 2400")


def to_dot(diagram: Diagram, rankdir: str = "TB", dpi: int | None = None) -> str:
    """The diagram as Graphviz DOT text, flowing ``rankdir``; ``dpi`` sets the
    resolution of raster output (.png)."""
    _check_layout(rankdir, dpi)
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


# -- Mermaid -----------------------------------------------------------------------


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
    return _MERMAID_SPECIAL.sub(lambda m: _MERMAID_ENTITIES[m[0]], _one_line(text))


_MERMAID_SHAPES = {
    "input": ('(["', '"])'),
    "output": ('(["', '"])'),
    "shared": ('[("', '")]'),
    "function": ('("', '")'),
}


def to_mermaid(diagram: Diagram, rankdir: str = "TB") -> str:
    """The diagram as a Mermaid flowchart (GitHub and most Markdown viewers draw it)."""
    _check_layout(rankdir, None)
    ids = _MermaidIds()
    lines = [f"flowchart {rankdir}", f"  %% {_one_line(diagram.title)}"]
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


# -- files -------------------------------------------------------------------------


def build_diagram(summary: ModelSummary, depth: int = 1) -> Diagram:
    """The diagram of a summarised model; blocks open ``depth`` levels deep."""
    return _Builder(summary, depth).build()


def render_graph(
    summary: ModelSummary,
    path: str | Path,
    depth: int = 1,
    *,
    rankdir: str = "TB",
    dpi: int | None = None,
) -> Path:
    """Write the model's picture to ``path``; its suffix picks the format (``FORMATS``).

    .dot and .mmd are text; .svg, .png and .pdf are drawn by Graphviz's ``dot``,
    which must be installed. ``rankdir`` is the direction the graph flows in
    (``RANKDIRS``), ``dpi`` the resolution of a .png. Raises GraphvizError when dot is
    missing or fails, and ValueError for another suffix or layout."""
    _check_layout(rankdir, dpi)
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(
            f"cannot write {target.name}: the picture's suffix is one of "
            + ", ".join(f".{f}" for f in FORMATS)
        )
    diagram = build_diagram(summary, depth)
    if fmt == "mmd":
        target.write_text(to_mermaid(diagram, rankdir), encoding="utf-8")
        return target
    dot_text = to_dot(diagram, rankdir, dpi)
    if fmt == "dot":
        target.write_text(dot_text, encoding="utf-8")
        return target
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizError(
            f"writing .{fmt} needs Graphviz's dot, which is not installed "
            "(apt-get install graphviz, brew install graphviz, conda install graphviz); "
            "or write .dot or .mmd (Mermaid), which need nothing"
        )
    done = subprocess.run(
        [exe, f"-T{fmt}", "-o", str(target)],
        input=dot_text.encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise GraphvizError(f"dot failed: {message}")
    return target
