"""``python -m nnspec.spec.make_schema``: write the JSON Schema of the spec language."""

from __future__ import annotations

import argparse
from pathlib import Path

from .schema import SCHEMA_FILE, schema_text

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnspec.spec.make_schema",
        description="Write the JSON Schema of the nnspec language.",
    )
    default = Path(__file__).resolve().parent.parent / "schemas" / SCHEMA_FILE
    parser.add_argument("-o", "--output", type=Path, default=default)
    args = parser.parse_args(argv)
    args.output.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
