"""Generated files type-check under `mypy --strict`: every example, and the
language reference's models, as a user's CI would check the files they import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nnspec
from tests.compiler.test_repeat_count import STACK
from tests.compiler.test_spec_language import SECTION_1_LENET, SECTION_4_TWO_HEADS
from tests.compiler.test_when import BOTTLENECK, MOBILE

pytest.importorskip("mypy")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_generated_sources_pass_mypy_strict(tmp_path: Path) -> None:
    sources = {p.stem: nnspec.load(p).source() for p in sorted(EXAMPLES.glob("*.yaml"))}
    sources["section_1"] = nnspec.loads(SECTION_1_LENET).source()
    sources["section_4"] = nnspec.loads(SECTION_4_TWO_HEADS).source()
    sources["repeat_count"] = nnspec.loads(STACK).source()
    sources["when_bottleneck"] = nnspec.loads(BOTTLENECK).source()
    sources["when_residual"] = nnspec.loads(MOBILE).source()
    files = []
    for name, source in sources.items():
        path = tmp_path / f"gen_{name}.py"
        path.write_text(source, encoding="utf-8")
        files.append(str(path))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            *files,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(files) >= 9
