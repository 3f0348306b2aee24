"""Names: default node names, and the rules for names that reach generated code."""

from __future__ import annotations

import builtins
import keyword
import re
from functools import cache

import torch.nn as nn

__all__ = [
    "Namespace",
    "class_name_problem",
    "local_name",
    "name_problem",
    "node_name_problem",
    "snake_case",
]

_SPECIAL = {"PReLU": "prelu", "RReLU": "rrelu"}
_ACRONYM_WORDS = (("ReLU", "Relu"), ("SiLU", "Silu"))
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*")

# Attributes of nn.Module that a submodule of the same name would hide or break.
_MODULE_ATTRIBUTES = frozenset(
    name for name in dir(nn.Module) if not name.startswith("__")
) | {"training"}
# Names the generated source itself uses.
_GENERATED = frozenset({"self", "torch", "nn", "F", "super"})
_BUILTINS = frozenset(dir(builtins))


@cache
def snake_case(op: str) -> str:
    """An op's default node name, as torch.nn.functional spells such names.

    >>> snake_case("BatchNorm2d"), snake_case("ReLU"), snake_case("MaxPool2d")
    ('batch_norm2d', 'relu', 'max_pool2d')
    """
    op = op.rsplit(":", 1)[-1]
    if op in _SPECIAL:
        return _SPECIAL[op]
    for word, plain in _ACRONYM_WORDS:
        op = op.replace(word, plain)
    op = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", op)
    op = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", op)
    name = re.sub(r"\W", "_", op).lower()
    return name if not name[:1].isdigit() else f"_{name}"


def name_problem(name: str, *, attribute: bool = True) -> str | None:
    """Why ``name`` cannot be a node or input name in generated code, or None if it can."""
    if not _IDENTIFIER.fullmatch(name):
        return "is not a lowercase identifier (letters, digits and _, not starting with a digit)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name.startswith("__"):
        return "starts with a double underscore"
    if name in _GENERATED:
        return "is used by the generated code"
    if name in _BUILTINS:
        return "would shadow the Python builtin of that name"
    if attribute and name in _MODULE_ATTRIBUTES:
        return f"would hide nn.Module.{name}"
    return None


def node_name_problem(name: str, *, attribute: bool = True) -> str | None:
    """Why ``name`` cannot name a node, or None if it can.

    A node's name is the attribute of its module as the reference library spells it
    (``LayerNorm``, ``self``, ``output``): any identifier that is safe as an attribute
    of an nn.Module. In ``forward`` its value is held in a local of its own
    (``local_name``), so names the generated code uses are fine here.
    """
    if not _ATTRIBUTE.fullmatch(name):
        return "is not an identifier (letters, digits and _, not starting with a digit)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name.startswith("__"):
        return "starts with a double underscore"
    if attribute and name in _MODULE_ATTRIBUTES:
        return f"would hide nn.Module.{name}"
    return None


def local_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The local variable of ``forward`` that holds node ``name``'s value.

    The name itself where it is a fine local already; else its snake case
    (``LayerNorm`` -> ``layer_norm``), with ``_`` appended while it is a name the
    generated code uses, a builtin, a keyword or one of ``taken`` (the inputs of
    ``forward``): ``self`` -> ``self_``, ``input`` -> ``input_``.

    >>> local_name("LayerNorm"), local_name("self"), local_name("x", {"x"})
    ('layer_norm', 'self_', 'x_')
    """
    local = name if _IDENTIFIER.fullmatch(name) else snake_case(name)
    # Ends: a lowercase identifier ending in _ is no builtin or keyword.
    while local in taken or name_problem(local, attribute=False) is not None:
        local += "_"
    return local


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a generated class, or None if it can."""
    if not _CLASS_NAME.fullmatch(name):
        return "is not a CapWords identifier (letters, digits and _, starting with A-Z)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name in _GENERATED or name in _BUILTINS:
        return "would shadow a name the generated code uses"
    return None


class Namespace:
    """Hands out unique names: the candidate itself, else candidate_1, candidate_2, ..."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self._taken: set[str] = set(taken or ())
        self._counters: dict[str, int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._taken

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def fresh(self, candidate: str) -> str:
        """``candidate`` if it is free and legal, else the first free ``candidate_N``.

        A candidate that no suffix makes legal (``fc-``, ``__x``) is first made into
        an identifier, so that a name is always found.
        """
        base = candidate
        if name_problem(base) is not None:
            base = f"{base}_"
        if name_problem(f"{base}_1") is not None:
            base = _identifier(base)
        name, n = base, self._counters.get(base, 0)
        if n or name in self._taken or name_problem(name) is not None:
            while True:  # ends: base_N is legal for every N, and few names are taken
                n += 1
                name = f"{base}_{n}"
                if name not in self._taken and name_problem(name) is None:
                    break
        self._counters[base] = n
        self._taken.add(name)
        return name


def _identifier(text: str) -> str:
    """``text`` as a lowercase identifier to which ``_N`` can be appended: other
    characters become ``_``, leading underscores go, and ``n`` leads a digit."""
    base = re.sub(r"[^a-z0-9_]", "_", text.lower()).lstrip("_") or "node"
    base = f"n{base}" if base[0].isdigit() else base
    return base if name_problem(f"{base}_1") is None else "node"
