"""nnspec.inspection sits above the compiler and below the API and the commands: none
of its modules imports the runtime, nnspec.api or the command line, and they import
one another without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "nnspec.inspection"
SOURCE = Path(__file__).resolve().parents[2] / "inspection"
ABOVE = ("nnspec.runtime", "nnspec.api", "nnspec.cli", "nnspec.views", "runtime")


def imports_of(path: Path) -> set[str]:
    """The modules a file imports, type-checking imports included, made absolute."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = PACKAGE.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports."""
    names = {
        p.stem: f"{PACKAGE}.{p.stem}" if p.stem != "__init__" else PACKAGE
        for p in SOURCE.glob("*.py")
    }
    own = set(names.values())
    return {
        names[p.stem]: imports_of(p) & own - {names[p.stem]}
        for p in SOURCE.glob("*.py")
    }


def test_inspection_imports_nothing_above_it() -> None:
    files = sorted(SOURCE.glob("*.py"))
    assert len(files) > 5
    for path in files:
        above = {
            name
            for name in imports_of(path)
            if any(name == a or name.startswith(a + ".") for a in ABOVE)
        }
        assert not above, f"{path.name} imports {sorted(above)}"


def test_inspection_modules_import_each_other_without_a_cycle() -> None:
    graph = modules()
    assert graph[f"{PACKAGE}.graph_build"] >= {f"{PACKAGE}.summary"}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, "import cycle: " + " -> ".join([*path, name])
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
