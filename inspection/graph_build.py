"""A model's picture, worked out from its summary: the boxes, clusters and edges.

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

import math
from dataclasses import dataclass

from ..compiler.values import TensorValue, TupleValue, Value
from .diagram import Cluster, Diagram, DiagramNode, Edge
from .formats import format_count
from .kinds import NodeKind
from .records import NodeSummary
from .summary import ModelSummary

__all__ = ["build_diagram"]


def build_diagram(summary: ModelSummary, depth: int = 1) -> Diagram:
    """The diagram of a summarised model; blocks open ``depth`` levels deep."""
    return _Builder(summary, depth).build()


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
            self.add(
                DiagramNode(node_id, NodeKind.INPUT, name, value.render(), value), root
            )
            env[name] = _Source(node_id, value)
        self.walk(s.rows, env, root, self.depth)
        for out in s.outputs:
            node_id = f"output:{out.key}"
            title = out.key if s.outputs_kind == "dict" else "output"
            if s.outputs_kind == "tuple":
                title = f"output {s.outputs.index(out)}"
            self.add(DiagramNode(node_id, NodeKind.OUTPUT, title, "", out.value), root)
            self.tensor(env, out.ref.split(".")[0], root)
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
            for ref in row.inputs:
                self.tensor(env, ref.split(".")[0], cluster)
            sources = [self.resolve(env, ref) for ref in row.inputs]
            if row.kind.opens and row.children and depth > 0:
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
            if row.params and row.kind is not NodeKind.USE:
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
            if row.kind is NodeKind.USE and row.module is not None:
                self.uses.setdefault(row.module, []).append(row.name)
            elif row.module is not None:
                self.callers[row.module] = (row.name, cluster, False)

    def tensor(self, env: _Env, name: str, cluster: Cluster) -> None:
        """A name no node or input gives is a tensor the module holds (``param:``,
        ``buffer:``): one box, where it is first read."""
        if name in env:
            return
        prefix = cluster.id.removeprefix("cluster_")
        node_id = f"tensor:{prefix}.{name}" if prefix else f"tensor:{name}"
        self.add(DiagramNode(node_id, NodeKind.TENSOR, name, "tensor", None), cluster)
        env[name] = _Source(node_id, None)

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
                (
                    r
                    for r in self.rows.values()
                    if r.module == path and r.kind is not NodeKind.USE
                ),
                None,
            )
            node_id = f"shared:{path}"
            subtitle = f"{row.op} module" if row is not None else "module"
            if row is not None and row.params:
                subtitle += f" · {format_count(row.params)} params"
            subtitle += f" · {len(uses) + 1} calls"
            self.add(DiagramNode(node_id, NodeKind.SHARED, path, subtitle), cluster)
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
    if row.kind is NodeKind.REPEAT:
        return f"{row.op} ×{len(row.children)}"
    if row.kind is NodeKind.USE:
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
