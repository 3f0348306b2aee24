"""Draw a model: its summary as a picture, written to a file whose suffix picks the
format (``FORMATS``): Graphviz DOT or Mermaid text, or svg, png and pdf drawn by
Graphviz's ``dot``.

The picture is worked out in ``graph_build`` and written by ``graph_dot`` and
``graph_mermaid``; this module names them all, for callers that want one import.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .diagram import RANKDIRS, Cluster, Diagram, DiagramNode, Edge, check_layout
from .graph_build import build_diagram
from .graph_dot import to_dot
from .graph_mermaid import to_mermaid
from .summary import ModelSummary

__all__ = [
    "FORMATS",
    "RANKDIRS",
    "Cluster",
    "Diagram",
    "DiagramNode",
    "Edge",
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
    check_layout(rankdir, dpi)
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
