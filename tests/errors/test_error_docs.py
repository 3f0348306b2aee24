"""The compile-model outputs shown in docs/errors.md are what compile-model prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nnspec.cli import compile_main
from tests.conftest import ROOT

SHOWN = re.compile(r"```text\n\$ compile-model (\S+)\n(.*?)```", re.DOTALL)
EXAMPLES = SHOWN.findall((ROOT / "docs" / "errors.md").read_text(encoding="utf-8"))


def test_the_page_shows_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize(("spec", "shown"), EXAMPLES, ids=[s for s, _ in EXAMPLES])
def test_shown_output_is_real(
    spec: str,
    shown: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(ROOT)
    assert compile_main([spec, "-o", str(tmp_path / "out.py")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == shown
