"""Custom losses, metrics, data functions and schedule functions named
``package.module:Name`` in the train section.

They follow the rule of custom ops: the package must be allowed (``--allow-import
package`` on the command line, ``allow_imports=[...]`` in Python), and a name that
cannot be imported is reported at its line in the spec.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from ..spec.errors import SpecError, suggest
from ..spec.yaml_source import Path

__all__ = ["allowed_module", "is_custom", "resolve_custom"]

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_custom(name: str) -> bool:
    """Whether ``name`` is written ``package.module:Name``."""
    return ":" in name


def resolve_custom(
    name: str,
    allow_imports: frozenset[str],
    what: str,
    path: Path,
    fail: Callable[..., SpecError],
) -> Any:
    """The object ``package.module:Name`` names, imported only from an allowed
    package; ``what`` (``loss``, ``metric``) words the errors."""
    if not _DOTTED.match(name):
        raise fail(path, f"custom {what} {name!r} must be written package.module:Name")
    module, attr = allowed_module(
        name,
        allow_imports,
        f"custom {what} {name!r}",
        path,
        fail,
        importing=f" for {what} {name!r}",
    )
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise fail(
            path, f"module {module.__name__!r} has no {attr!r}{suggest(attr, public)}"
        )
    return getattr(module, attr)


def allowed_module(
    name: str,
    allow_imports: frozenset[str],
    subject: str,
    path: Path,
    fail: Callable[..., SpecError],
    *,
    importing: str = "",
) -> tuple[Any, str]:
    """(module, attribute name) of ``package.module:name``, imported only from an
    allowed package. ``subject`` begins the refusal (``data function 'p.m:f'``);
    ``importing`` follows the module's name when it cannot be imported."""
    module_path, _, attr = name.partition(":")
    package = module_path.split(".")[0]
    if package not in allow_imports:
        raise fail(
            path,
            f"{subject} imports package {package!r}, which is not allowed; allow it "
            f"with --allow-import {package} (nnspec train) or "
            f"allow_imports=[{package!r}] (Trainer)",
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise fail(path, f"cannot import {module_path!r}{importing}: {exc}") from None
    return module, attr
