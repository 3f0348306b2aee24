"""The model zoo: specs shipped with nnspec, loaded by name as ``zoo:NAME``.

Each ``NAME.yaml`` in this package is one model. ``nnspec.load("zoo:unet")``,
``compile-model zoo:unet``, ``nnspec summary zoo:unet`` and ``extends: zoo:unet`` in a
spec all read the file ``path("unet")`` gives. The files are package data, trusted as
the package's code is (``--confine`` does not refuse them); a name is a plain lowercase
identifier, so ``zoo:NAME`` never reaches a file outside this folder.

A spec says which implementation it matches in a leading comment line
``# reference: ...``; ``reference(name)`` reads it.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

__all__ = ["NAME_PATTERN", "folder", "names", "path", "reference"]

#: A zoo name: lowercase letters, digits and underscores, starting with a letter.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")
_REFERENCE = re.compile(r"#\s*reference:\s*(.+?)\s*$")


def folder() -> Path:
    """The folder holding the zoo's spec files."""
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """The zoo's model names, sorted."""
    return sorted(
        p.stem
        for p in folder().glob("*.yaml")
        if p.is_file() and NAME_PATTERN.match(p.stem)
    )


def path(name: str) -> Path | None:
    """The spec file of the zoo model ``name``; None when the zoo has no such model
    (or ``name`` is not a plain lowercase identifier)."""
    if not NAME_PATTERN.match(name):
        return None
    file = folder() / f"{name}.yaml"
    return file if file.is_file() else None


def reference(name: str) -> str | None:
    """The implementation the zoo spec ``name`` matches, from its leading comment
    line ``# reference: ...``; None when it names none."""
    file = path(name)
    if file is None:
        return None
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if match := _REFERENCE.match(line):
            return match.group(1)
    return None
