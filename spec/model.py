"""The typed form of a spec (pydantic). The JSON Schema in ``schemas/`` is made from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from .train import TrainSpec

__all__ = [
    "DTYPES",
    "BlockParam",
    "BlockSpec",
    "InitRule",
    "InputSpec",
    "NodeSpec",
    "ParamValue",
    "SeqNodeSpec",
    "SpecModel",
    "WeightsSpec",
    "dim_names",
    "example_shape",
]

NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
NODE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: A name in a seq: an identifier, or for a repeated child a template of the copy's
#: index (``denselayer${i + 1}``).
SEQ_NAME_PATTERN = r"^([a-z_][a-z0-9_]*|[a-z0-9_]*(\$\{[^}]+\}[a-z0-9_]*)+)$"
CLASS_PATTERN = r"^[A-Z][A-Za-z0-9_]*$"

DType = Literal[
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
]
DTYPES: tuple[str, ...] = get_args(DType)

ParamValue = bool | int | float | str | None | list[Any]

Ref = Annotated[str, Field(min_length=1)]
Refs = (
    Ref
    | Annotated[list[Ref], Field(min_length=1)]
    | Annotated[dict[str, Ref], Field(min_length=1)]
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


#: A named input dimension, ``{seq: 16}``: a size known only at run time, with its
#: example size for shape inference.
NamedDim = Annotated[
    dict[Annotated[str, Field(pattern=NAME_PATTERN)], Annotated[int, Field(ge=1)]],
    Field(min_length=1, max_length=1),
]
InputDim = Annotated[int, Field(ge=1)] | NamedDim


class InputSpec(_Strict):
    """An input of the model: its per-sample shape and dtype."""

    shape: list[InputDim] = Field(
        description="Per-sample shape, without the batch dimension; [] for one number. "
        "A size may be named, {seq: 16}: known only at run time, 16 its example."
    )
    dtype: DType = Field("float32", description="Element type.")


InputDecl = list[InputDim] | InputSpec


def example_shape(shape: list[Any]) -> list[int]:
    """An input's per-sample shape with each named size as its example."""
    return [next(iter(d.values())) if isinstance(d, dict) else d for d in shape]


def dim_names(shape: list[Any]) -> list[str | None]:
    """The name of each named size of an input's shape, None for a fixed one."""
    return [next(iter(d)) if isinstance(d, dict) else None for d in shape]


class WeightsSpec(_Strict):
    """Pretrained weights to load into the built model (or one node's module)."""

    path: str = Field(
        description="A .safetensors file, or a torch file (.pt, .pth, .bin) of tensors; "
        "relative to the spec that names it."
    )
    prefix: str = Field(
        "", description="Use only the file's keys under this prefix, with it removed."
    )
    strict: bool = Field(
        True,
        description="Fail on missing, unexpected or mis-shaped keys; false loads what "
        "matches and reports the rest.",
    )


class NodeSpec(BaseModel):
    """One node of a graph. Keys other than those below are the op's keyword arguments."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    op: str | None = Field(
        None,
        description="What the node computes: a torch.nn class, a torch.nn.functional or "
        "torch function (lowercase), a block, or package.module:Class.",
    )
    name: str | None = Field(
        None,
        pattern=NODE_NAME_PATTERN,
        description="Identifier, unique in its graph; the attribute name of the "
        "module, as the reference library spells it (LayerNorm, self). Default: the "
        "op in snake_case, then _1, _2, ...",
    )
    in_: Refs | None = Field(
        None,
        alias="in",
        description="Input reference(s): a node or input name, name.K for the K-th "
        "element of a tuple; default: the previous node.",
    )
    args: list[Any] | None = Field(None, description="Positional arguments of the op.")
    repeat: Annotated[int, Field(ge=1)] | str | None = Field(
        None, description="N chained copies of the node; ${i} is the copy's index."
    )
    use: str | None = Field(
        None, description="Call the module of this earlier node again (shared weights)."
    )
    when: bool | str | None = Field(
        None,
        description="A condition (true, false or an expression of params and sizes): "
        "when false the node is absent and its first input passes through.",
    )
    weights: WeightsSpec | None = Field(
        None, description="Pretrained weights for this node's module."
    )
    patch: dict[str, Node] | None = Field(
        None,
        description="For a module built by a custom factory: submodule path -> the node "
        "that replaces it (e.g. fc: {op: Linear, out_features: 10}).",
    )
    param: Annotated[list[int | str], Field(min_length=1)] | None = Field(
        None,
        description="A bare nn.Parameter of this shape (sizes or expressions, no batch "
        "dimension), instead of an op; with init:, requires_grad:, dtype:.",
    )
    buffer: Annotated[list[int | str], Field(min_length=1)] | None = Field(
        None,
        description="A buffer of this shape (no batch dimension), instead of an op; "
        "with init:, dtype:, persistent: (default true).",
    )
    tie: dict[str, str] | None = Field(
        None,
        description="Parameter of this node's module -> dotted path of a parameter "
        "elsewhere in the model that it shares (weight: transformer.wte.weight).",
    )
    like: Ref | None = Field(
        None,
        description="For a creation op (arange, ones, zeros, full, ...): the node or "
        "input whose device the new tensor is made on.",
    )
    call: dict[str, Any] | None = Field(
        None,
        description="For a module node: keyword arguments of its forward "
        "(need_weights: false); values may be expressions, run-time sizes included.",
    )
    seq: list[SeqItem] | None = Field(
        None,
        description="An nn.Sequential of these nodes, chained in order (instead of "
        "'op'); children are numbered 0, 1, ... unless named.",
    )


class SeqNodeSpec(NodeSpec):
    """A child of a seq node: a node without 'in' or 'use', whose name may be a
    template of the copy's index when it repeats."""

    name: str | None = Field(
        None,
        pattern=SEQ_NAME_PATTERN,
        description="Key of the child in the nn.Sequential; default: its position. A "
        "repeated child may name its copies with ${i} (denselayer${i + 1}).",
    )


Node = Annotated[str, Field(min_length=1)] | NodeSpec
SeqItem = Annotated[str, Field(min_length=1)] | SeqNodeSpec
NodeSpec.model_rebuild()
SeqNodeSpec.model_rebuild()


class BlockParam(_Strict):
    """A block parameter declaration: a type, and a default unless required."""

    type: Literal["int", "float", "bool", "str", "list", "any"] = Field(
        "any", description="The value's type, checked where the block is used."
    )
    default: ParamValue = Field(
        None,
        description="The value when a use gives none; absent: the param is required.",
    )
    doc: str | None = Field(None, description="What the param means (for readers).")


class BlockSpec(_Strict):
    """A reusable parametrised sub-graph, used like an op."""

    doc: str | None = Field(None, description="Docstring of the block's class.")
    params: dict[str, BlockParam | ParamValue] = Field(
        default_factory=dict,
        description="name -> default value, or {type, default, doc}; a declaration "
        "without a default is required.",
    )
    inputs: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=lambda: ["x"], description="Names of the block's inputs."
    )
    layers: list[Node] = Field(min_length=1, description="The block's graph, in order.")
    outputs: Refs | None = Field(
        None, description="What the block returns; default: its last node."
    )


class InitRule(BaseModel):
    """Initialise the parameters of matching modules: ``weight: xavier_normal`` etc."""

    model_config = ConfigDict(extra="allow")

    match: str = Field(description="An op name, or a glob over (dotted) node names.")


class SpecModel(_Strict):
    """A whole nnspec document."""

    nnspec: Literal[1] = Field(description="Format version.")
    extends: str | None = Field(
        None,
        description="A base spec (path relative to this file) that this one derives from.",
    )
    name: str = Field(pattern=CLASS_PATTERN, description="Class name of the model.")
    doc: str | None = Field(None, description="Docstring of the generated class.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="Named values for expressions."
    )
    inputs: dict[str, InputDecl] = Field(
        description="Input name -> per-sample shape, or {shape, dtype}."
    )
    blocks: dict[Annotated[str, Field(pattern=CLASS_PATTERN)], BlockSpec] = Field(
        default_factory=dict, description="Reusable parametrised sub-graphs."
    )
    layers: list[Node] = Field(min_length=1, description="The forward graph, in order.")
    outputs: Refs | None = Field(
        None, description="What forward returns; default: the last node."
    )
    init: list[InitRule] = Field(
        default_factory=list,
        description="Weight initialisation rules; later rules win.",
    )
    freeze: list[str] = Field(
        default_factory=list,
        description="Node-name globs whose parameters do not train.",
    )
    train: TrainSpec | None = Field(
        None, description="How the model trains: read by `nnspec train`."
    )
    weights: WeightsSpec | None = Field(
        None, description="Pretrained weights loaded when the model is built."
    )
    replace: dict[str, Node] | None = Field(
        None, description="With extends: node of the base -> its new definition."
    )
    insert_before: dict[str, Node | list[Node]] | None = Field(
        None, description="With extends: node of the base -> nodes inserted before it."
    )
    insert_after: dict[str, Node | list[Node]] | None = Field(
        None, description="With extends: node of the base -> nodes inserted after it."
    )
    remove: list[str] | None = Field(
        None, description="With extends: nodes of the base to remove."
    )
