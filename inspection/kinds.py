"""The kinds of node that summary rows and graph boxes are, named once.

The summary and the pictures share one vocabulary, ``NodeKind``. What a statement of a
generated ``forward`` is (a module call, a shared layer's second call, a tensor
function) is read from the compiler's class IR here and nowhere else: ``calls_module``
and ``call_kind`` read the call's kind (``CallKind``) that the compiler records. The
compiler's op kinds map onto it as: ``module`` and ``factory`` ops are ``MODULE``,
``block`` ops ``BLOCK``, ``function`` ops ``FUNCTION``; a repeated node is a
``REPEAT`` whatever its op.
"""

from __future__ import annotations

from enum import Enum

from ..compiler.ir import Call, CallKind, ClassIR, ModuleDef

__all__ = ["NodeKind", "call_kind", "called_module", "calls_module", "module_kind"]


class NodeKind(str, Enum):
    """What a node is. The values are the strings ``--json`` prints."""

    MODEL = "model"  # the root of a summary
    MODULE = "module"  # a torch module
    BLOCK = "block"  # an instance of a spec block: its nodes are inside it
    REPEAT = "repeat"  # the copies of a repeated node, named 0, 1, ...
    FUNCTION = "function"  # a tensor function
    USE = "use"  # a later call of an earlier module: a shared layer
    # Only in pictures:
    INPUT = "input"
    OUTPUT = "output"
    SHARED = "shared"  # the module a shared layer's calls share, drawn once
    TENSOR = "tensor"  # a bare parameter or buffer, drawn where a node reads it

    def __str__(self) -> str:
        return self.value

    @property
    def opens(self) -> bool:
        """A node with a graph of its own, which a picture can open as a cluster."""
        return self in (NodeKind.BLOCK, NodeKind.REPEAT)


def calls_module(call: Call) -> bool:
    """Whether a statement calls one of its class's modules (``self.<name>``)."""
    return call.kind is not CallKind.FUNCTION


def called_module(cls: ClassIR, call: Call) -> ModuleDef | None:
    """The module of ``cls`` that ``call`` calls (the original, for a shared layer),
    or None for a tensor function."""
    if not calls_module(call):
        return None
    attr = call.callee.removeprefix("self.")
    return next((m for m in cls.modules if m.name == attr), None)


def module_kind(module: ModuleDef) -> NodeKind:
    """What calling ``module`` the first time is: a block, a repeat or a module."""
    if module.block is not None:
        return NodeKind.BLOCK
    if module.children:
        return NodeKind.REPEAT
    return NodeKind.MODULE


def call_kind(cls: ClassIR, call: Call) -> NodeKind:
    """What the statement ``call`` of ``cls.forward`` is."""
    module = called_module(cls, call)
    if module is None:
        return NodeKind.FUNCTION
    if call.kind is CallKind.SHARED:
        return NodeKind.USE
    return module_kind(module)
