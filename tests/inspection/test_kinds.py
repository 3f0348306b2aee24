"""One vocabulary of node kinds: what the IR's statements are, the summary's rows and
the picture's boxes all say it with NodeKind."""

from __future__ import annotations

import json

import pytest

import nnspec
from nnspec.cli import main
from nnspec.inspection.graph_render import DiagramNode, build_diagram
from nnspec.inspection.kinds import NodeKind, call_kind, called_module
from nnspec.inspection.records import NodeSummary

EVERY_KIND = """\
nnspec: 1
name: Kinds
inputs:
  x: [8]
blocks:
  Pair:
    layers:
      - {op: Linear, name: fc, out_features: 8}
      - ReLU
layers:
  - {op: Linear, name: proj, out_features: 8}
  - {op: Pair, name: pair}
  - {op: Pair, name: stack, repeat: 2}
  - {op: add, name: res, in: [stack, proj]}
  - {use: proj, name: again}
"""

TOP = {
    "proj": NodeKind.MODULE,
    "pair": NodeKind.BLOCK,
    "stack": NodeKind.REPEAT,
    "res": NodeKind.FUNCTION,
    "again": NodeKind.USE,
}


@pytest.fixture(scope="module")
def spec() -> nnspec.Spec:
    return nnspec.loads(EVERY_KIND)


def test_call_kind_names_every_statement_of_forward(spec: nnspec.Spec) -> None:
    model = spec.compiled.model
    assert {c.node: call_kind(model, c) for c in model.calls} == TOP
    block = next(c for c in spec.compiled.blocks if c.name == "Pair")
    assert [call_kind(block, c) for c in block.calls] == [NodeKind.MODULE] * 2
    # A shared layer's call is of the module it shares; a function calls none.
    calls = {c.node: c for c in model.calls}
    again = called_module(model, calls["again"])
    assert again is not None and again.name == "proj"
    assert called_module(model, calls["res"]) is None


def test_summary_rows_and_json_use_the_same_kinds(  # type: ignore[no-untyped-def]
    spec: nnspec.Spec, tmp_path, capsys
) -> None:
    summary = spec.summary()
    assert {row.node: row.kind for row in summary.rows} == TOP
    stack = summary["stack"]
    assert [c.kind for c in stack.children] == [NodeKind.BLOCK, NodeKind.BLOCK]
    assert [c.kind for c in summary["pair"].children] == [NodeKind.MODULE] * 2
    assert summary.to_dict()["rows"][0]["kind"] == "module"
    path = tmp_path / "kinds.yaml"
    path.write_text(EVERY_KIND, encoding="utf-8")
    assert main(["summary", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["node"]: r["kind"] for r in rows} == {k: v.value for k, v in TOP.items()}


def test_picture_boxes_are_the_rows_kinds(spec: nnspec.Spec) -> None:
    diagram = build_diagram(spec.summary(), depth=0)
    kinds = {node_id: node.kind for node_id, node in diagram.nodes.items()}
    assert kinds == {
        "input:x": NodeKind.INPUT,
        **TOP,
        "shared:proj": NodeKind.SHARED,
        "output:again": NodeKind.OUTPUT,
    }
    opened = build_diagram(spec.summary(), depth=1)
    assert [c.id for c in opened.root.clusters] == ["cluster_pair", "cluster_stack"]


def test_kinds_given_as_strings_become_node_kinds() -> None:
    row = NodeSummary("fc", "fc", "Linear", "module", 3, None, [])  # type: ignore[arg-type]
    assert row.kind is NodeKind.MODULE
    assert DiagramNode("fc", "use", "fc").kind is NodeKind.USE  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'layer'"):
        DiagramNode("fc", "layer", "fc")  # type: ignore[arg-type]
