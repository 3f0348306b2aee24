"""The graph IR.

Two levels, as in torch.fx and Keras: a *template* per graph, read from the spec
(the model's graph and each block's), and, after shape inference, one *class* per
graph as it will be generated.

Node kinds of a class, a small closed set:

- ``ModuleDef``: a module instance, an attribute ``self.<name>``, built in
  ``__init__``. Constructing a module and calling it are different things, so a
  shared layer is one ModuleDef called twice.
- ``Call``: one statement of ``forward``, calling a module (``self.<name>``) or a
  tensor function on earlier values.
- inputs (the parameters of ``forward``) and outputs (what it returns).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Literal

from .ops import OpInfo
from .values import TensorValue, Value

__all__ = [
    "Call",
    "ClassIR",
    "CtorParam",
    "GraphTemplate",
    "InitStatement",
    "ModuleDef",
    "NodeTemplate",
    "Outputs",
    "Ref",
]

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Ref:
    """A reference to a value: a node or input name, then tuple indices (``lstm.0``)."""

    name: str
    index: tuple[int, ...] = ()
    path: Path = ()  # where the reference is written, for errors

    def __str__(self) -> str:
        return ".".join([self.name, *map(str, self.index)])


@dataclass
class NodeTemplate:
    """One node as written in the spec, with defaults applied and references parsed."""

    name: str
    path: Path
    op: OpInfo | None
    use: str | None
    inputs: list[Ref] | dict[str, Ref] | None  # None: the previous node's output
    args: list[Any]
    kwargs: dict[str, Any]
    repeat: Any = None
    weights: Any = None  # WeightsSpec for this node's module
    patch: dict[str, Any] | None = None  # submodule path -> node, for factory ops

    @property
    def op_name(self) -> str:
        return self.op.name if self.op is not None else f"use {self.use}"

    @property
    def label(self) -> str:
        """How errors name the node: ``node 'conv1' (Conv2d)``."""
        return f"node {self.name!r} ({self.op_name})"


@dataclass
class Outputs:
    """What forward returns: one reference, a tuple of them, or a dict of them."""

    kind: Literal["single", "tuple", "dict"]
    refs: list[Ref]
    keys: list[str] = field(default_factory=list)
    path: Path = ()


@dataclass
class GraphTemplate:
    """The model's or one block's graph, as written."""

    name: str
    kind: Literal["model", "block"]
    doc: str | None
    params: dict[
        str, Any
    ]  # name -> BlockParam-like declaration (blocks) or value (model)
    inputs: list[str]
    nodes: list[NodeTemplate]
    outputs: Outputs
    path: Path


@dataclass
class CtorParam:
    """A constructor parameter of a generated class."""

    name: str
    annotation: str
    default: ast.expr | None = None  # None: required
    doc: str | None = None


@dataclass
class ModuleDef:
    """``self.<name> = <ctor>`` in ``__init__``."""

    name: str
    op: OpInfo
    ctor: ast.expr
    line: int
    value_class: str  # class name of the built module, for init rules and summaries
    children: list[ModuleDef] = field(default_factory=list)  # copies of a repeat
    block: str | None = None  # the block class, for a block instance
    param_names: tuple[str, ...] = ()  # direct parameters of a torch module
    param_shapes: tuple[tuple[int, ...], ...] = ()  # their shapes, in the same order
    # (path, class, ((param, shape), ...)) of the modules inside a torch module
    nested: tuple[tuple[str, str, tuple[tuple[str, tuple[int, ...]], ...]], ...] = ()
    # Names of the module's classes and their torch.nn bases, by path ('' for itself):
    # an init rule for Linear also reaches a subclass of Linear.
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    num_params: int = 0
    # Submodules replaced after construction: (dotted path inside, constructor).
    patches: list[tuple[str, ast.expr]] = field(default_factory=list)


@dataclass
class Call:
    """One statement of ``forward``."""

    node: str
    callee: str  # 'self.conv1', 'torch.cat', ...
    inputs: list[Ref] | dict[str, Ref]
    sequence: bool  # inputs are passed as one list (cat, stack)
    args: list[ast.expr]
    kwargs: list[tuple[str, ast.expr]]
    value: Value
    line: int
    op: str
    file: str = ""  # the spec file the node was written in, when it differs by node


@dataclass
class InitStatement:
    """``nn.init.<fn>_(<module>.<param>, ...)`` over one or more modules."""

    modules: list[str]  # dotted module paths
    calls: list[tuple[str, str, list[ast.expr], list[tuple[str, ast.expr]]]]
    # (param name, init function, positional args, keyword args)


@dataclass
class ClassIR:
    """One generated class."""

    name: str
    doc: str | None
    params: list[CtorParam]
    inputs: list[str]
    input_values: list[Value]
    modules: list[ModuleDef]
    calls: list[Call]
    outputs: Outputs
    output_value: Value | dict[str, Value]
    attributes: list[tuple[str, ast.expr]] = field(default_factory=list)
    init: list[InitStatement] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)


def tensor_inputs(values: list[Value]) -> list[TensorValue]:
    return [v for v in values if isinstance(v, TensorValue)]
