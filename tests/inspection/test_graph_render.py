"""Pictures of models: clusters for blocks, shapes on edges, shared layers, the U."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.inspection.graph_render import (
    build_diagram,
    render_graph,
    to_dot,
    to_mermaid,
)
from nnspec.inspection.summary import ModelSummary
from tests.conftest import EXAMPLES
from tests.inspection.test_summary import TWO_HEADS

UNET_BLOCKS = ["inc", "down1", "down2", "down3", "down4"]
UNET_BLOCKS += ["up1", "up2", "up3", "up4", "outc"]
# The U-Net's skip connections: each encoder level feeds the decoder level of its size.
UNET_SKIPS = [("inc", "up4"), ("down1", "up3"), ("down2", "up2"), ("down3", "up1")]
SVG = "{http://www.w3.org/2000/svg}"

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed"
)


@pytest.fixture(scope="module")
def unet() -> ModelSummary:
    return nnspec.load(EXAMPLES / "unet.yaml").summary()


def svg_nodes(path: Path) -> dict[str, tuple[float, float]]:
    """Node title -> centre of its first text, from an SVG drawn by dot."""
    found = {}
    for group in ET.parse(path).getroot().iter(f"{SVG}g"):
        if group.get("class") == "node":
            title = group.find(f"{SVG}title")
            text = group.find(f"{SVG}text")
            assert title is not None and text is not None
            found[title.text or ""] = (float(text.get("x")), float(text.get("y")))  # type: ignore[arg-type]
    return found


def svg_clusters(path: Path) -> dict[str, str]:
    """Cluster id -> the words of its label."""
    found = {}
    for group in ET.parse(path).getroot().iter(f"{SVG}g"):
        if group.get("class") == "cluster":
            title = group.find(f"{SVG}title")
            assert title is not None
            words = [(t.text or "").strip() for t in group.iter(f"{SVG}text")]
            found[title.text or ""] = " ".join(w for w in words if w)
    return found


def test_dot_has_a_labelled_cluster_per_block(unet: ModelSummary) -> None:
    dot = to_dot(build_diagram(unet, depth=1))
    for name in UNET_BLOCKS:
        assert f'subgraph "cluster_{name}" {{' in dot, name
    assert (
        '<b>up1</b><br/><font point-size="3"> </font><br/><font point-size="9">Up</font>'
        in dot
    )
    # Depth 1 opens the top-level blocks only: DoubleConv inside Up stays one box.
    assert '"cluster_up1.conv"' not in dot
    assert '"up1.conv" [' in dot
    nested = to_dot(build_diagram(unet, depth=2))
    assert 'subgraph "cluster_up1.conv" {' in nested
    flat = to_dot(build_diagram(unet, depth=0))
    assert "subgraph" not in flat


def test_edges_carry_the_shapes_that_flow(unet: ModelSummary) -> None:
    diagram = build_diagram(unet, depth=1)
    edges = {(e.src, e.dst): e.label for e in diagram.edges if e.kind == "data"}
    assert edges[("input:x", "inc.conv2d")] == "[B,3,64,64]"
    # Up's inputs: x (from below) goes to the upsampling, skip straight to cat.
    assert edges[("down4.conv", "up1.up")] == "[B,512,4,4]"
    assert edges[("down3.conv", "up1.cat")] == "[B,512,8,8]"
    assert edges[("up1.up", "up1.cat")] == "[B,512,8,8]"
    assert edges[("outc.conv", "output:outc")] == "[B,2,64,64]"


def test_unet_skips_found_and_decoder_rises(unet: ModelSummary) -> None:
    diagram = build_diagram(unet, depth=0)
    skips = sorted((e.src, e.dst) for e in diagram.edges if e.skip)
    assert skips == sorted(UNET_SKIPS)
    rising = {(e.src, e.dst) for e in diagram.edges if e.rising}
    assert ("down4", "up1") in rising and ("up3", "up4") in rising
    assert ("down3", "down4") not in rising


def test_plain_chain_has_no_u() -> None:
    lenet = nnspec.loads(
        "nnspec: 1\nname: Small\ninputs: {x: [3, 16, 16]}\nlayers:\n"
        "  - {op: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}\n"
        "  - {op: MaxPool2d, kernel_size: 2}\n"
        "  - {op: Upsample, scale_factor: 2}\n"
    ).summary()
    diagram = build_diagram(lenet)
    assert not any(e.skip or e.rising for e in diagram.edges)


@needs_dot
def test_unet_svg_renders_with_its_clusters(unet: ModelSummary, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = render_graph(unet, tmp_path / "unet.svg", depth=1)
    clusters = svg_clusters(path)
    assert set(clusters) == {f"cluster_{name}" for name in UNET_BLOCKS}
    assert clusters["cluster_down2"] == "down2 Down"
    nodes = svg_nodes(path)
    assert {"input:x", "up1.cat", "down4.conv", "output:outc"} <= set(nodes)
    labels = [t.text for t in ET.parse(path).getroot().iter(f"{SVG}text")]
    assert "[B,1024,8,8]" in labels


@needs_dot
def test_unet_is_drawn_as_a_u(unet: ModelSummary, tmp_path) -> None:  # type: ignore[no-untyped-def]
    nodes = svg_nodes(render_graph(unet, tmp_path / "unet.svg", depth=0))
    for encoder, decoder in UNET_SKIPS:
        (ex, ey), (dx, dy) = nodes[encoder], nodes[decoder]
        assert ey == pytest.approx(dy), f"{encoder} and {decoder} side by side"
        assert ex < dx, f"{encoder} left of {decoder}"
    lowest = max(nodes.values(), key=lambda xy: xy[1])
    assert nodes["down4"] == lowest
    # Each encoder level lies below the one before it (SVG y grows downward).
    ys = [nodes[name][1] for name in ["inc", "down1", "down2", "down3", "down4"]]
    assert ys == sorted(ys)


def test_png_and_unknown_suffix(unet: ModelSummary, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"\.svg, \.png"):
        render_graph(unet, tmp_path / "unet.jpeg")
    if shutil.which("dot"):
        png = render_graph(unet, tmp_path / "unet.png", depth=0)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mermaid_has_subgraphs_and_labelled_edges(unet: ModelSummary) -> None:
    text = to_mermaid(build_diagram(unet, depth=1))
    assert text.startswith("flowchart TB\n")
    assert 'subgraph n_cluster_up1["up1: Up"]' in text
    assert re.search(r'n_down3_conv -->\|"\[B,512,8,8\]"\| n_up1_cat', text)
    opened = sum(line.strip().startswith("subgraph ") for line in text.splitlines())
    closed = sum(line.strip() == "end" for line in text.splitlines())
    assert opened == closed == len(UNET_BLOCKS)


def test_shared_layer_drawn_as_one_module_linked_to_each_call() -> None:
    summary = nnspec.loads(TWO_HEADS).summary()
    diagram = build_diagram(summary)
    module = diagram.nodes["shared:shared"]
    assert module.kind == "shared" and "65.8K params" in module.subtitle
    links = {e.dst for e in diagram.edges if e.kind == "shared"}
    assert links == {"shared", "again"}
    dot = to_dot(diagram)
    assert '"shared:shared" [shape=cylinder' in dot
    assert re.search(r'"shared:shared" -> "again" \[style=dashed', dot)
    assert diagram.nodes["trunk"].frozen
    mermaid = to_mermaid(diagram)
    assert "n_shared_shared -.- n_again" in mermaid


def test_cli_writes_dot_and_mermaid(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_HEADS, encoding="utf-8")
    assert main(["graph", str(spec), "-o", str(tmp_path / "two.mmd")]) == 0
    assert (tmp_path / "two.mmd").read_text().startswith("flowchart TB")
    assert main(["graph", str(spec), "-o", str(tmp_path / "two.dot")]) == 0
    assert (tmp_path / "two.dot").read_text().startswith('digraph "TwoHeads"')
    assert main(["graph", str(spec), "-o", str(tmp_path / "two.gif")]) == 2
    assert "suffix" in capsys.readouterr().err


def test_named_inputs_label_their_edges_and_repeats_draw_once() -> None:
    summary = nnspec.loads(
        "nnspec: 1\nname: Attn\ninputs: {x: [10, 32]}\nlayers:\n"
        "  - {op: MultiheadAttention, name: mha, embed_dim: 32, num_heads: 4,\n"
        "     batch_first: true, in: {query: x, key: x, value: x}}\n"
        "  - {op: add, name: twice, in: [mha.0, mha.0]}\n"
    ).summary()
    edges = [(e.src, e.dst, e.label) for e in build_diagram(summary).edges]
    assert edges == [
        ("input:x", "mha", "query [B,10,32]"),
        ("input:x", "mha", "key [B,10,32]"),
        ("input:x", "mha", "value [B,10,32]"),
        ("mha", "twice", "[B,10,32]"),
        ("twice", "output:twice", "[B,10,32]"),
    ]


def test_block_returning_a_list_feeds_each_element() -> None:
    summary = nnspec.loads(
        "nnspec: 1\nname: Halves\ninputs: {x: [6]}\n"
        "blocks:\n  Split:\n    layers:\n"
        "      - {op: Linear, name: a, out_features: 8}\n"
        "      - {op: chunk, name: parts, args: [2], dim: -1}\n"
        "    outputs: [parts.0, parts.1]\n"
        "layers:\n  - {op: Split, name: s}\n  - {op: mul, in: [s.0, s.1]}\n"
    ).summary()
    opened = [(e.src, e.dst, e.label) for e in build_diagram(summary).edges]
    assert opened.count(("s.parts", "mul", "[B,4]")) == 2
    closed = [(e.src, e.dst, e.label) for e in build_diagram(summary, 0).edges]
    assert closed.count(("s", "mul", "[B,4]")) == 2
