"""The README's and docs/zoo.md's tables list exactly the zoo's specs, each with the
model class and the parameter count it builds with its default params."""

from __future__ import annotations

import re

import pytest

import nnspec
import nnspec.zoo
from tests.conftest import ROOT

ROW = re.compile(r"^\| `zoo:([a-z0-9_]+)` \| ([A-Za-z0-9_]+) \| ([0-9,]+) \|", re.M)


def _rows(text: str) -> dict[str, tuple[str, int]]:
    rows: dict[str, tuple[str, int]] = {}
    for name, model, count in ROW.findall(text):
        assert name not in rows, f"zoo:{name} listed twice"
        rows[name] = (model, int(count.replace(",", "")))
    return rows


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[str, int]]:
    found = {}
    for name in nnspec.zoo.names():
        spec = nnspec.load(f"zoo:{name}")
        model = spec.build(device="meta")
        found[name] = (spec.name, sum(p.numel() for p in model.parameters()))
    return found


@pytest.mark.parametrize(
    ("file", "section"), [("README.md", "Model zoo"), ("docs/zoo.md", "The specs")]
)
def test_tables_list_the_zoo_as_built(
    file: str, section: str, built: dict[str, tuple[str, int]]
) -> None:
    text = _section((ROOT / file).read_text(encoding="utf-8"), section)
    assert _rows(text) == built


def test_docs_say_what_each_spec_was_checked_against() -> None:
    text = _section((ROOT / "docs/zoo.md").read_text(encoding="utf-8"), "The specs")
    checked = re.findall(r"^\| `zoo:([a-z0-9_]+)` \| [^|]*[0-9]+\.[0-9]+", text, re.M)
    assert sorted(checked) == nnspec.zoo.names()
