"""The compiler's IR: every type that passes hand to one another.

Two levels, as in torch.fx and Keras: a *template* per graph, read from the spec
(the model's graph and each block's), and, after shape inference, one *class* per
graph as it will be generated.

- ``Ref``, ``NodeTemplate``, ``Outputs``, ``ParamDecl``, ``GraphTemplate``: a graph
  as written (``passes/lower.py`` makes them).
- ``GraphResult``, ``BlockUse``: a graph walked with concrete inputs (the shapes
  pass makes them).
- ``ClassIR`` and its parts: ``ModuleDef`` (a module instance, an attribute
  ``self.<name>`` built in ``__init__``; constructing a module and calling it are
  different things, so a shared layer is one ModuleDef called twice), ``Call`` (one
  statement of ``forward``, of a ``CallKind``), ``CtorParam``, ``InitStatement``.
- ``ModuleEntry``: one module of the built model, by dotted path.
- ``CompileContext``: what the pipeline's passes read and fill in, in order.
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .expressions import Val
from .ops import OpInfo
from .values import Value

if TYPE_CHECKING:
    from ..spec.model import SpecModel
    from ..spec.yaml_source import Document

__all__ = [
    "BlockUse",
    "Call",
    "CallKind",
    "ClassIR",
    "CompileContext",
    "CtorParam",
    "GraphResult",
    "GraphTemplate",
    "InitStatement",
    "ModuleDef",
    "ModuleEntry",
    "NodeTemplate",
    "Outputs",
    "ParamDecl",
    "Ref",
    "TensorDecl",
]

Path = tuple[Any, ...]


# -- templates: a graph as written -------------------------------------------------


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
    like: Ref | None = None  # a creation op's device: that of this value
    call: dict[str, Any] | None = None  # keyword arguments of a module's forward
    when: Any = None  # the node's condition as written (None: unconditional)
    #: A seq node's children, in order (its op is nn.Sequential); None otherwise.
    seq: list[NodeTemplate] | None = None
    #: A seq child's key as written (a template of ``i`` for a repeated child);
    #: None: its position.
    key: str | None = None
    tensor: TensorDecl | None = None  # a bare parameter or buffer
    tie: dict[str, str] | None = None  # own parameter -> dotted path of another

    @property
    def op_name(self) -> str:
        if self.tensor is not None:
            return self.tensor.kind
        return self.op.name if self.op is not None else f"use {self.use}"

    @property
    def label(self) -> str:
        """How errors name the node: ``node 'conv1' (Conv2d)``."""
        return f"node {self.name!r} ({self.op_name})"


@dataclass
class TensorDecl:
    """A bare tensor of the module: ``param:`` (an ``nn.Parameter``) or ``buffer:``."""

    kind: Literal["param", "buffer"]
    shape: list[Any]  # sizes as written (ints or expressions)
    init: Any = None  # as written; None: zeros
    dtype: str | None = None
    persistent: bool = True  # buffers only
    requires_grad: bool = True  # params only


@dataclass
class Outputs:
    """What forward returns: one reference, a tuple of them, or a dict of them."""

    kind: Literal["single", "tuple", "dict"]
    refs: list[Ref]
    keys: list[str] = field(default_factory=list)
    path: Path = ()


class ParamDecl:
    """A block parameter: its type ('any' when undeclared), default, and whether required."""

    def __init__(
        self, type_: str, default: Any, required: bool, doc: str | None
    ) -> None:
        self.type = type_
        self.default = default
        self.required = required
        self.doc = doc


@dataclass
class GraphTemplate:
    """The model's or one block's graph, as written."""

    name: str
    kind: Literal["model", "block"]
    doc: str | None
    params: dict[str, Any]  # name -> ParamDecl (blocks) or value (model)
    inputs: list[str]
    nodes: list[NodeTemplate]
    outputs: Outputs
    path: Path


# -- classes: a graph as it is generated ---------------------------------------------


class CallKind(enum.Enum):
    """What one statement of ``forward`` calls."""

    MODULE = "module"  # a torch module (or a factory's) built in __init__
    BLOCK = "block"  # an instance of a block's generated class
    REPEAT = "repeat"  # an nn.Sequential (or ModuleList) of a repeated node's copies
    FUNCTION = "function"  # a tensor function: torch.*, F.* or an allowed import
    SHARED = "shared"  # an earlier node's module, called again (``use:``)


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
    #: A conditional module of a block class (``when:``): its condition in the
    #: class's terms, and whether this use builds it (absent: ``ctor`` is unused).
    condition: ast.expr | None = None
    present: bool = True
    seq: bool = False  # a seq node's nn.Sequential: children of their own kinds
    #: 'param' or 'buffer' for a bare tensor (``ctor`` is its value); None for a module.
    tensor: str | None = None
    persistent: bool = True  # a buffer's
    #: A bare tensor's initialiser for reset_parameters (as written, where), if any.
    init: tuple[Any, tuple] | None = None


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
    kind: CallKind = CallKind.MODULE
    # A repeat with side inputs: its copies are an nn.ModuleList, called in a loop
    # (``for layer in self.layer: x = layer(x, mask)``).
    loop: bool = False
    leading: int = 0  # how many of ``args`` come before the inputs (einsum)
    #: A conditional statement of a block class (``when:``): the test of its
    #: ``if`` (``self.downsample is not None``, ``self.use_add``), and whether
    #: this use makes the call (when not, the value is the first input's).
    condition: ast.expr | None = None
    present: bool = True


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
    #: Tied parameters, set at the end of __init__: (dotted path, dotted source path).
    ties: list[tuple[str, str]] = field(default_factory=list)


# -- walked graphs -------------------------------------------------------------------


@dataclass
class GraphResult:
    """A graph walked with concrete inputs: what its class holds and computes."""

    template: GraphTemplate
    modules: list[ModuleDef]
    calls: list[Call]
    output_value: Value | dict[str, Value]
    input_values: list[Value]
    hoisted: list[tuple[str, Val]]  # constructor parameters for values not expressible
    attributes: list[tuple[str, ast.expr]]  # forward-time constants set in __init__
    placeholders: dict[str, tuple[int, int]]  # input-size name -> (input index, dim)
    param_values: dict[str, Any]
    size: int = 0  # nodes, with block instances and repeated copies expanded
    #: Block params the class is built for (not constructor parameters): those
    #: read by a repeat count its copies cannot be made from.
    fixed: set[str] = field(default_factory=set)
    #: What forward returns, with the nodes a false ``when:`` left out replaced
    #: by the inputs they pass through (None: the template's outputs).
    outputs: Outputs | None = None


@dataclass
class BlockUse:
    """One use of a block: the walk of its graph, and what the parent passed."""

    result: GraphResult
    node_path: tuple


@dataclass(frozen=True)
class ModuleEntry:
    """A module of the built model: its dotted path, class, and direct parameters."""

    path: str
    class_name: str
    params: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...] = ()
    kinds: tuple[str, ...] = ()  # its class and torch.nn base classes, by name
    tensor: str | None = None  # 'param' or 'buffer': a bare tensor (params: ('value',))
    init: tuple[Any, tuple] | None = None  # a bare tensor's own initialiser, and where

    def shape_of(self, param: str) -> tuple[int, ...]:
        return self.shapes[self.params.index(param)]


# -- the pipeline's state ------------------------------------------------------------


@dataclass
class CompileContext:
    """What the passes of ``pipeline.PIPELINE`` read and fill in, in order.

    Each field past the inputs is None (or empty) until the pass that makes it ran:
    validate -> ``spec``; resolve_params -> ``params``; lower -> ``model_template``
    and ``block_templates``; infer_shapes -> ``result``, ``uses`` and
    ``model_params``; assemble ->
    ``model`` and ``blocks``; apply_init -> ``modules``; generate -> ``imports``,
    ``source`` and ``weights``.
    """

    document: Document
    overrides: Mapping[str, Any] | None = None  # params given by the caller
    allow_imports: frozenset[str] = frozenset()
    spec: SpecModel | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model_template: GraphTemplate | None = None
    block_templates: dict[str, GraphTemplate] = field(default_factory=dict)
    result: GraphResult | None = None
    uses: dict[str, list[BlockUse]] = field(default_factory=dict)
    #: The params the model's class takes as keyword arguments (their defaults
    #: the values compiled for).
    model_params: list[CtorParam] = field(default_factory=list)
    model: ClassIR | None = None
    blocks: list[ClassIR] = field(default_factory=list)
    modules: list[ModuleEntry] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    source: str = ""
    #: Weights to load at build time: (module path, '' for the whole model; the
    #: WeightsSpec; where it is written).
    weights: list[tuple[str, Any, tuple]] = field(default_factory=list)
