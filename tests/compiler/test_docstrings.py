"""Docstrings of the generated classes: the spec's ``doc`` and its params' docs, and
none where the spec gives none."""

from __future__ import annotations

import ast
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


def test_blank_doc_gives_no_docstring() -> None:
    spec = nnspec.loads(SPEC.format(doc='"   "', block_doc='""'), path="small.yaml")
    assert spec.module_class().__doc__ is None
    assert spec.build().inner.__doc__ is None
    tree = ast.parse(spec.source())
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [c.name for c in classes] == ["Inner", "Small"]
    assert all(ast.get_docstring(c) is None for c in classes)


def test_docstring_only_where_the_spec_gives_one() -> None:
    spec = nnspec.loads(
        SPEC.format(doc="The model.", block_doc="The block.").replace(
            "    doc: The block.\n", ""
        ),
        path="small.yaml",
    )
    assert spec.module_class().__doc__ == "The model."
    assert spec.build().inner.__doc__ is None
    assert spec.source().count('"""') == 2 * 2  # the file's and the model's


def test_param_docs_are_the_args_of_the_block_docstring() -> None:
    spec = nnspec.loads(
        """\
nnspec: 1
name: Net
inputs: {x: [4]}
blocks:
  Head:
    params:
      width: {type: int, doc: "features of the hidden layer"}
      p: {default: 0.1}
    layers:
      - {op: Linear, out_features: "${width}"}
      - {op: Dropout, p: "${p}"}
  Plain:
    doc: No params documented.
    params: {width: {type: int}}
    layers: [{op: Linear, out_features: "${width}"}]
layers:
  - {op: Head, width: 8}
  - {op: Plain, width: 2}
""",
        path="net.yaml",
    )
    model = spec.build()
    assert (
        '    """Args:\n        width: features of the hidden layer\n    """\n'
        in spec.source()
    )
    assert "p:" not in (type(model.head).__doc__ or "")
    assert type(model.plain).__doc__ == "No params documented."
    assert spec.module_class().__doc__ is None


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
