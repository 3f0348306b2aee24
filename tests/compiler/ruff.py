"""Running ruff on generated source, with settings independent of the project's own
configuration (which leaves tests/golden out of the project's lint)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["ruff_check", "ruff_format_check"]

_SETTINGS = ["--isolated", "--line-length", "88", "--target-version", "py310"]
# The project's rule selection, with E501 held to the formatter's 88 columns.
_RULES = ["--select", "E,F,W,I,B,UP,SIM,RUF", "--ignore", "RUF001,RUF002,RUF003"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which(
        "ruff"
    )
    if exe:
        return [exe]
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    return [sys.executable, "-m", "ruff"]


def _run(args: list[str]) -> str | None:
    """None when ruff is content, else what it printed."""
    result = subprocess.run([*_ruff(), *args], capture_output=True, text=True)
    return None if result.returncode == 0 else result.stdout + result.stderr


def ruff_format_check(files: list[Path]) -> str | None:
    """None if ``ruff format`` would leave every file as it is, else the diff."""
    return _run(["format", "--check", "--diff", *_SETTINGS, *map(str, files)])


def ruff_check(files: list[Path]) -> str | None:
    """None if ``ruff check`` finds nothing, else its report."""
    return _run(["check", "--no-cache", *_SETTINGS, *_RULES, *map(str, files)])
