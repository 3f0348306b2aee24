"""The graph IR's old home: its types now live in ``ir.py``.

Kept for the modules that still import them from here (codegen.py, summary.py and
passes/assemble.py); new code imports ``ir``.
"""

from .ir import (
    Call,
    CallKind,
    ClassIR,
    CtorParam,
    GraphTemplate,
    InitStatement,
    ModuleDef,
    NodeTemplate,
    Outputs,
    Ref,
)

__all__ = [
    "Call",
    "CallKind",
    "ClassIR",
    "CtorParam",
    "GraphTemplate",
    "InitStatement",
    "ModuleDef",
    "NodeTemplate",
    "Outputs",
    "Ref",
]
