"""The generated source of every example is kept in tests/golden and compared byte for
byte; it is also clean under ruff's formatter and linter.

After a deliberate change to the generated code: ``python -m tests.compiler.regen_golden``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compiler.examples import EXAMPLE_NAMES, load_example
from tests.compiler.regen_golden import golden_path
from tests.compiler.ruff import ruff_check, ruff_format_check

REGENERATE = "python -m tests.compiler.regen_golden"


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_generated_source_matches_golden(name: str) -> None:
    golden = golden_path(name)
    assert golden.exists(), f"no golden file for {name}: run {REGENERATE}"
    expected = golden.read_bytes().decode("utf-8")
    assert load_example(name).source() == expected, (
        f"the generated source of examples/{name}.yaml changed; if that is intended, "
        f"run {REGENERATE} and review the diff"
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("generated")
    files = []
    for name in EXAMPLE_NAMES:
        target = folder / f"{name}.py"
        target.write_text(load_example(name).source(), encoding="utf-8")
        files.append(target)
    return files


def test_generated_source_is_ruff_formatted(generated: list[Path]) -> None:
    assert ruff_format_check(generated) is None


def test_generated_source_is_ruff_clean(generated: list[Path]) -> None:
    assert ruff_check(generated) is None
