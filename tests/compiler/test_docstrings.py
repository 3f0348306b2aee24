"""Docstrings of the generated classes: taken from the spec's ``doc``."""

from __future__ import annotations

import nnspec

SPEC = """\
nnspec: 1
name: Small
doc: {doc}
inputs: {{x: [4]}}
blocks:
  Inner:
    doc: {block_doc}
    layers: [{{op: Linear, out_features: 4}}]
layers:
  - {{op: Inner, name: inner}}
  - {{op: Linear, out_features: 2}}
"""


def test_blank_doc_gives_the_default_docstring() -> None:
    spec = nnspec.loads(SPEC.format(doc='"   "', block_doc='""'), path="small.yaml")
    assert spec.module_class().__doc__ == "Small, compiled from small.yaml."
    assert spec.build().inner.__doc__ == "Inner, compiled from small.yaml."
