"""Docstrings of the generated classes: taken from the spec's ``doc``."""

from __future__ import annotations

import inspect
from pathlib import Path

import nnspec
from tests.compiler.ruff import ruff_check, ruff_format_check

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


def test_long_docs_are_wrapped_for_ruff(tmp_path: Path) -> None:
    words = "the generated class keeps every word of a long doc " * 4
    doc = f'"{words}ends in a quote \\""'
    block_doc = f'"First line.\\n\\n  {words}indented\\n\\nlast."'
    spec = nnspec.loads(SPEC.format(doc=doc, block_doc=block_doc), path="small.yaml")
    source = spec.source()
    assert max(len(line) for line in source.splitlines()) <= 88
    target = tmp_path / "small.py"
    target.write_text(source, encoding="utf-8")
    assert ruff_format_check([target]) is None
    assert ruff_check([target]) is None
    model = spec.build()
    assert (
        inspect.cleandoc(model.__doc__).split() == f'{words}ends in a quote "'.split()
    )
    block = inspect.cleandoc(model.inner.__doc__)
    assert block.split("\n\n")[0] == "First line."
    assert block.split("\n\n")[1].split() == f"{words}indented".split()
    assert all(line.startswith("  ") for line in block.split("\n\n")[1].splitlines())
    assert block.endswith("\n\nlast.")


def test_doc_one_column_too_long_for_one_line(tmp_path: Path) -> None:
    doc = "A doc that is exactly one column too long for a one-line docstring here ok."
    doc += "x" * (79 - len(doc))
    spec = nnspec.loads(SPEC.format(doc=doc, block_doc="short"), path="small.yaml")
    source = spec.source()
    assert max(len(line) for line in source.splitlines()) <= 88
    target = tmp_path / "small.py"
    target.write_text(source, encoding="utf-8")
    assert ruff_format_check([target]) is None
    assert inspect.cleandoc(spec.module_class().__doc__).split() == doc.split()
