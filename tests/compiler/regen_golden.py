"""Rewrite the golden files: the generated source of every spec in examples/.

Run from the repository root after a deliberate change to the generated code, then read
the diff before committing it::

    python -m tests.compiler.regen_golden
"""

from __future__ import annotations

from pathlib import Path

import nnspec
from tests.conftest import EXAMPLES, ROOT

__all__ = ["GOLDEN", "golden_path", "main"]

#: Where the golden files live: tests/golden/<example>.py.
GOLDEN = ROOT / "tests" / "golden"


def golden_path(name: str) -> Path:
    return GOLDEN / f"{name}.py"


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for spec_file in sorted(EXAMPLES.glob("*.yaml")):
        source = nnspec.load(spec_file).source()
        target = golden_path(spec_file.stem)
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old != source:
            target.write_text(source, encoding="utf-8")
            print(
                f"{'updated' if old is not None else 'created'} {target.relative_to(ROOT)}"
            )


if __name__ == "__main__":
    main()
