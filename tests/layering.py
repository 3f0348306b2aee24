"""The import rules of the package, checked from the source with ``ast``.

Stages, lowest first: ``spec`` (0) <- ``compiler`` (1) <- ``runtime`` and
``inspection`` (2) <- ``nnspec`` itself, the API and the command line (3). A module
may import from its own stage or a lower one; ``runtime`` and ``inspection`` do not
import each other. Imports inside functions count for the stages as much as those at
the top of a module. Among the imports that run when a module is imported (at module
level, not under ``if TYPE_CHECKING:``) there must be no cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

#: Stage of each top-level package below ``nnspec`` (anything else in ``nnspec`` is
#: the top stage). ``schemas`` holds data only, usable from any stage; so does ``zoo``,
#: the model zoo's spec files with the few lines that list them.
STAGES: dict[str, int] = {
    "nnspec.schemas": 0,
    "nnspec.zoo": 0,
    "nnspec.spec": 0,
    "nnspec.compiler": 1,
    "nnspec.runtime": 2,
    "nnspec.inspection": 2,
}
TOP = 3
ROOT = "nnspec"


@dataclass(frozen=True)
class Import:
    """One import statement's target, as a module of the package."""

    source: str  # the importing module
    target: str  # the imported module (the most specific one that exists)
    file: Path
    line: int
    #: Runs when ``source`` is imported (module level, not under TYPE_CHECKING).
    eager: bool


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """``[tool.setuptools.package-dir]`` of a pyproject.toml, folders made absolute."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {
        name: (pyproject.parent / folder).resolve() for name, folder in mapping.items()
    }


def modules(dirs: Mapping[str, Path]) -> dict[str, Path]:
    """Every module of the mapped packages: dotted name -> file. A folder mapped
    on its own (``nnspec.compiler.passes``) is named by its own entry."""
    claimed = set(dirs.values())
    found: dict[str, Path] = {}
    for package, folder in dirs.items():
        for file in sorted(folder.rglob("*.py")):
            parts = file.relative_to(folder).with_suffix("").parts
            if any(
                (folder / Path(*parts[:i])) in claimed for i in range(1, len(parts))
            ):
                continue  # inside a folder that has its own entry
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = file
    return found


def stage(module: str) -> int:
    for package, number in STAGES.items():
        if module == package or module.startswith(package + "."):
            return number
    return TOP


def family(module: str) -> str:
    """The top-level package below ``nnspec`` a module belongs to."""
    return ".".join(module.split(".")[:2])


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    body: list[ast.stmt], eager: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements anywhere in ``body``, each with whether it runs at import."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, eager
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner, False
        elif isinstance(node, ast.If) and _under_type_checking(node):
            yield from _statements(node.body, False)
            yield from _statements(node.orelse, eager)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    inner_body = [
                        c.body
                        if isinstance(c, (ast.ExceptHandler, ast.match_case))
                        else [c]
                        for c in children
                    ]
                    for block in inner_body:
                        yield from _statements(
                            [s for s in block if isinstance(s, ast.stmt)], eager
                        )


def imports(name: str, file: Path, known: Mapping[str, Path]) -> Iterator[Import]:
    """The package-internal imports of one module, relative ones resolved."""
    tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    for node, eager in _statements(tree.body, True):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                if node.module:
                    base = f"{base}.{node.module}"
            else:
                base = node.module or ""
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in dict.fromkeys(targets):
            if target == ROOT or target.startswith(ROOT + "."):
                yield Import(name, _existing(target, known), file, node.lineno, eager)


def _existing(target: str, known: Mapping[str, Path]) -> str:
    """The module itself, or (for a name not a module) the nearest enclosing one."""
    while target not in known and "." in target:
        target = target.rpartition(".")[0]
    return target


def collect(dirs: Mapping[str, Path]) -> list[Import]:
    known = modules(dirs)
    return [edge for name, file in known.items() for edge in imports(name, file, known)]


def upward(edges: list[Import], root: Path) -> list[str]:
    """One line per import that goes up a stage or across between stage-2 packages."""
    problems = []
    for edge in edges:
        low, high = stage(edge.source), stage(edge.target)
        across = low == high == 2 and family(edge.source) != family(edge.target)
        if high > low or across:
            where = (
                edge.file.relative_to(root)
                if edge.file.is_relative_to(root)
                else edge.file
            )
            problems.append(
                f"{where}:{edge.line}: {edge.source} (stage {low}) imports "
                f"{edge.target} (stage {high})"
            )
    return problems


def cycles(edges: list[Import]) -> list[list[str]]:
    """Cycles among the imports that run at import time: one per strongly connected
    group of modules, as a path that returns to its start."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.eager and edge.source != edge.target:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    found = []
    for group in _components(graph):
        if len(group) > 1:
            found.append(_cycle_in(sorted(group), graph))
    return sorted(found)


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def _cycle_in(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = group[0]
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in group:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if child not in came:
                    came[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one
