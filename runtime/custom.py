"""Custom losses and metrics named ``package.module:Name`` in the train section.

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

__all__ = ["is_custom", "resolve_custom"]

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
    module_path, _, attr = name.partition(":")
    package = module_path.split(".")[0]
    if package not in allow_imports:
        raise fail(
            path,
            f"custom {what} {name!r} imports package {package!r}, which is not "
            f"allowed; allow it with --allow-import {package} (nnspec train) or "
            f"allow_imports=[{package!r}] (Trainer)",
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise fail(
            path, f"cannot import {module_path!r} for {what} {name!r}: {exc}"
        ) from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise fail(
            path, f"module {module_path!r} has no {attr!r}{suggest(attr, public)}"
        )
    return getattr(module, attr)
