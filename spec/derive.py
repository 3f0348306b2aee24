"""Deriving a spec from another: ``extends``, overrides and graph edits.

The derived document and its bases are merged into one document before validation.
Every part keeps the position, and the file, where it was written: an error in a node
of the base points into the base file, an error in an edit into the derived one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

from .errors import Diagnostic, SpecError, suggest
from .files import FileRefused, open_regular, read_bounded
from .naming import Namespace, snake_case
from .yaml_source import Budget, Document, Path, parse_yaml

__all__ = ["EDIT_KEYS", "MERGED_KEYS", "default_node_names", "derive", "read_spec_file"]

#: Keys of a derived spec that edit the base's graph.
EDIT_KEYS = ("replace", "insert_before", "insert_after", "remove")
#: Keys whose mappings are merged entry by entry; every other key replaces the base's.
MERGED_KEYS = ("params", "blocks")
#: How many files an extends chain may span.
MAX_CHAIN = 32
#: What a file named by ``extends`` must be called.
SPEC_SUFFIXES = (".yaml", ".yml")


def default_node_names(layers: list[Any], reserved: set[str]) -> list[str | None]:
    """The name of each node of a graph: its own, or the default the language gives it
    (the op in snake case, then _1, _2, ...; explicit names are skipped)."""
    explicit = {
        n["name"]
        for n in layers
        if isinstance(n, dict) and isinstance(n.get("name"), str)
    }
    namespace = Namespace(reserved | explicit)
    names: list[str | None] = []
    for node in layers:
        if isinstance(node, str):
            names.append(namespace.fresh(snake_case(node)))
        elif isinstance(node, dict) and isinstance(node.get("name"), str):
            names.append(node["name"])
        elif isinstance(node, dict) and node.get("seq") is not None:
            names.append(namespace.fresh("seq"))
        elif isinstance(node, dict) and isinstance(node.get("op"), str):
            names.append(namespace.fresh(snake_case(node["op"])))
        elif isinstance(node, dict) and isinstance(node.get("use"), str):
            names.append(namespace.fresh(node["use"]))
        else:
            names.append(None)
    return names


class _Merge:
    """The merged document under construction.

    It takes over the base document's data and tables (the base was read for this
    merge alone and is not used after it), so each file of a chain costs time linear
    in the size of the merged document, not a copy of it.
    """

    def __init__(self, base: Document) -> None:
        self.doc = Document(
            path=base.path,
            source=base.source,
            data=base.data,
            marks=base.marks,
            key_marks=base.key_marks,
            origins=base.origins or {(): (base.path, base.source)},
        )

    def drop(self, prefixes: set[Path]) -> None:
        """Forget the positions of everything under any of ``prefixes``.

        One pass over each table, however many prefixes: a derived spec that
        replaces many entries costs time linear in the sizes, not their product.
        """
        lengths = sorted({len(p) for p in prefixes})
        for table in (self.doc.marks, self.doc.key_marks, self.doc.origins):
            for n in lengths:
                doomed = [p for p in table if p[:n] in prefixes]
                for path in doomed:
                    del table[path]

    def graft(self, grafts: list[tuple[Path, Document, Path]]) -> None:
        """For each (dst, src, src_path): copy the positions of ``src`` at
        ``src_path`` to ``dst`` in the merged document. One pass over each source's
        tables per length of ``src_path``."""
        groups: dict[tuple[int, int], tuple[Document, dict[Path, Path]]] = {}
        for dst, src, src_path in grafts:
            group = groups.setdefault((id(src), len(src_path)), (src, {}))
            group[1][src_path] = dst
            self.doc.origins[dst] = src.origin(src_path)
        for (_, n), (src, targets) in groups.items():
            for table, source_table in (
                (self.doc.marks, src.marks),
                (self.doc.key_marks, src.key_marks),
            ):
                for path, mark in source_table.items():
                    to = targets.get(path[:n])
                    if to is not None:
                        table[(*to, *path[n:])] = mark
            for path, origin in src.origins.items():
                to = targets.get(path[:n])
                if to is not None and len(path) > n:
                    self.doc.origins[(*to, *path[n:])] = origin

    def snapshot(self) -> Document:
        """The positions as they are now (the data is not copied)."""
        return Document(
            self.doc.path,
            self.doc.source,
            None,
            dict(self.doc.marks),
            dict(self.doc.key_marks),
            dict(self.doc.origins),
        )


def _edit_graph(merge: _Merge, derived: Document, base_file: str) -> None:
    data = merge.doc.data
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise derived.error(("extends",), f"the base {base_file} has no layers to edit")
    inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    names = default_node_names(layers, set(inputs) | set(params))
    # Each entry: (node data, document it comes from, its path there).
    entries: list[tuple[Any, Document, Path]] = []
    for i, (node, name) in enumerate(zip(layers, names)):
        if name is not None and not (isinstance(node, dict) and "name" in node):
            node = {"op": node} if isinstance(node, str) else dict(node)
            node["name"] = name
        entries.append((node, merge.doc, ("layers", i)))
    by_name = {name: i for i, name in enumerate(names) if name is not None}

    def find(edit: str, name: Any, path: Path) -> int:
        if not isinstance(name, str) or name not in by_name:
            known = [n for n in names if n]
            raise derived.error(
                path,
                f"{edit}: the base {base_file} has no node {name!r}{suggest(str(name), known)}; "
                f"its nodes: {', '.join(known)}",
                key=edit != "remove",
            )
        return by_name[name]

    replaced: dict[int, tuple[Any, Document, Path]] = {}
    before: dict[int, list[tuple[Any, Document, Path]]] = {}
    after: dict[int, list[tuple[Any, Document, Path]]] = {}
    removed: set[int] = set()
    for edit in EDIT_KEYS:
        value = derived.data.get(edit)
        if value is None:
            continue
        if edit == "remove":
            if not isinstance(value, list):
                raise derived.error((edit,), "remove is a list of node names")
            for j, name in enumerate(value):
                removed.add(find(edit, name, (edit, j)))
            continue
        if not isinstance(value, dict):
            raise derived.error(
                (edit,), f"{edit} maps node names of the base to new nodes"
            )
        for name, new in value.items():
            i = find(edit, name, (edit, name))
            if edit == "replace":
                # A replacement keeps the node's name unless it gives its own, so
                # references to the node still hold.
                if isinstance(new, str):
                    new = {"op": new, "name": name}
                elif isinstance(new, dict) and "name" not in new:
                    new = {**new, "name": name}
                replaced[i] = (new, derived, (edit, name))
            else:
                nodes = new if isinstance(new, list) else [new]
                paths = (
                    [(edit, name, j) for j in range(len(nodes))]
                    if isinstance(new, list)
                    else [(edit, name)]
                )
                target = before if edit == "insert_before" else after
                target.setdefault(i, []).extend(
                    (node, derived, p) for node, p in zip(nodes, paths)
                )
    result: list[tuple[Any, Document, Path]] = []
    for i, entry in enumerate(entries):
        result += before.get(i, [])
        if i not in removed:
            result.append(replaced.get(i, entry))
        result += after.get(i, [])
    snapshot = merge.snapshot()
    merge.drop({("layers",)})
    new_layers = []
    grafts: list[tuple[Path, Document, Path]] = []
    for k, (node, src, src_path) in enumerate(result):
        new_layers.append(copy.deepcopy(node))
        grafts.append((("layers", k), snapshot if src is merge.doc else src, src_path))
    merge.graft(grafts)
    data["layers"] = new_layers
    for table, before_edit in (
        (merge.doc.marks, snapshot.marks),
        (merge.doc.key_marks, snapshot.key_marks),
    ):
        if ("layers",) in before_edit:
            table[("layers",)] = before_edit[("layers",)]
    merge.doc.origins[("layers",)] = snapshot.origin(("layers",))


def derive(
    doc: Document,
    read: Callable[[str, str, Budget], Document],
    chain: tuple[str, ...] = (),
) -> Document:
    """The document with its ``extends`` chain resolved; unchanged if it has none.

    ``read(path, from_path, budget)`` loads a base file named relative to
    ``from_path``, within what is left of the limits (``doc.budget``, shared by the
    whole chain), as ``read_spec_file`` does.
    """
    if not isinstance(doc.data, dict) or "extends" not in doc.data:
        if isinstance(doc.data, dict):
            for key in (*EDIT_KEYS,):
                if key in doc.data:
                    raise doc.error(
                        (key,), f"{key} edits a base spec: it needs extends", key=True
                    )
        return doc
    target = doc.data["extends"]
    if not isinstance(target, str) or not target:
        raise doc.error(("extends",), "extends names a spec file, relative to this one")
    if "\0" in target:
        raise doc.error(("extends",), "the extends path contains a NUL character")
    if not target.endswith(SPEC_SUFFIXES):
        raise doc.error(
            ("extends",),
            f"extends names a spec file ending in .yaml or .yml, not {target!r}",
        )
    here = os.path.abspath(doc.path)
    chain = (*chain, here)
    base_path = os.path.normpath(os.path.join(os.path.dirname(doc.path), target))
    if os.path.abspath(base_path) in chain:
        cycle = " -> ".join(
            os.path.basename(p) for p in (*chain, os.path.abspath(base_path))
        )
        raise doc.error(("extends",), f"extends makes a cycle: {cycle}")
    if len(chain) > MAX_CHAIN:
        raise doc.error(
            ("extends",), f"extends chains are limited to {MAX_CHAIN} files"
        )
    try:
        base = read(base_path, doc.path, doc.budget)
    except SpecError as exc:
        if exc.line == 0:
            raise doc.error(
                ("extends",), f"cannot read the base spec: {exc.message}"
            ) from None
        raise
    if not isinstance(base.data, dict):
        raise doc.error(
            ("extends",),
            f"the base {target} is not a spec: its YAML is not a mapping of keys",
        )
    base = derive(base, read, chain)
    merge = _Merge(base)
    data = merge.doc.data
    if not isinstance(data, dict):  # pragma: no cover - parse_yaml guarantees a value
        raise doc.error(("extends",), "the base spec is not a mapping")
    data.pop("extends", None)
    replaced: list[Path] = []
    for key, value in doc.data.items():
        if key == "extends" or key in EDIT_KEYS:
            continue
        if (
            key in MERGED_KEYS
            and isinstance(value, dict)
            and isinstance(data.get(key), dict)
        ):
            for name, item in value.items():
                data[key][name] = copy.deepcopy(item)
                replaced.append((key, name))
            continue
        data[key] = copy.deepcopy(value)
        replaced.append((key,))
    merge.drop(set(replaced))
    merge.graft([(path, doc, path) for path in replaced])
    if any(key in doc.data for key in EDIT_KEYS):
        _edit_graph(merge, doc, os.path.basename(base_path))
    # The merged document is named after the derived file: that is what the user compiled.
    merged = merge.doc
    merged.origins.setdefault((), (base.path, base.source))
    return Document(
        path=doc.path,
        source=doc.source,
        data=merged.data,
        marks=merged.marks,
        key_marks=merged.key_marks,
        origins=merged.origins,
        budget=doc.budget,
    )


def read_spec_file(
    path: str,
    from_path: str | None = None,
    budget: Budget | None = None,
    *,
    root: str | None = None,
) -> Document:
    """Parse a spec file; a file that cannot be read is a SpecError without a position.

    Only a regular file is read (no directory, device or FIFO), and no more of it than
    the size limit left in ``budget``; with ``root``, only a file inside that folder.
    """
    budget = Budget() if budget is None else budget
    try:
        data = read_bounded(open_regular(path, "spec file", root), budget.bytes)
    except FileRefused as exc:
        raise SpecError(str(exc), path=path, line=0, column=0) from None
    if data is None:
        mib = budget.bytes // (1024 * 1024)
        what = (
            f"larger than {mib} MiB"
            if budget.files == 0
            else f"larger than the {budget.bytes:,} bytes left of the limit on a "
            "spec and the files it extends (8 MiB together)"
        )
        # At line 1, as parse_yaml reports a text too large: the file is readable.
        raise SpecError(f"the spec file {path} is {what}", path=path, line=1, column=1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"the spec file {path} is not UTF-8 text (byte {exc.start})",
            path=path,
            line=0,
            column=0,
        ) from None
    try:
        return parse_yaml(text, path, budget)
    except SpecError as exc:
        if from_path is None:
            raise
        # A base that is not YAML may be any file (a symbolic link to one): say
        # where, and quote none of its lines.
        raise SpecError(
            diagnostics=[
                Diagnostic(d.path, d.line, d.column, d.message) for d in exc.diagnostics
            ]
        ) from None
