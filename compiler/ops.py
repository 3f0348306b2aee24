"""What an op name means: a torch.nn module class, a tensor function, a block, or an
allowed custom import."""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch.nn as nn

from ..spec.errors import suggest
from ..spec.torch_ops import (
    INFERRED_ARGS,
    function_names,
    json_type,
    module_classes,
    parameter_names,
    signature_of,
)

__all__ = [
    "ARG_LIMITS",
    "INFERRED_ARGS",
    "MAX_ELEMENTS",
    "MAX_LAYERS",
    "Arguments",
    "Limit",
    "OpInfo",
    "OpLookupError",
    "arguments_of",
    "function_names",
    "input_names",
    "limit_problems",
    "module_names",
    "parameter_names",
    "resolve_op",
    "signature_of",
]

OpKind = Literal["module", "function", "block", "factory"]


class OpLookupError(Exception):
    """An op name that does not resolve; the compiler adds the position."""


@dataclass(frozen=True)
class OpInfo:
    """A resolved op. ``code`` is how the generated source spells it."""

    kind: OpKind
    name: str
    target: Any
    code: str
    import_module: str | None = (
        None  # a custom op's module, imported by the generated file
    )

    @property
    def class_name(self) -> str:
        return self.name.rsplit(":", 1)[-1]


def module_names() -> dict[str, type]:
    """torch.nn module classes a spec may name."""
    return module_classes()


def resolve_op(
    name: str, blocks: dict[str, Any], allow_imports: frozenset[str] = frozenset()
) -> OpInfo:
    """Resolve an op name. Raises OpLookupError with a suggestion."""
    if name in blocks:
        return OpInfo("block", name, blocks[name], name)
    if ":" in name:
        return _resolve_custom(name, allow_imports)
    if name[:1].isupper():
        modules = module_names()
        if name in modules:
            return OpInfo("module", name, modules[name], f"nn.{name}")
        raise OpLookupError(
            f"unknown op {name!r}: not a torch.nn layer or a block"
            + suggest(name, [*modules, *blocks])
        )
    functions = function_names()
    if name in functions:
        fn, code = functions[name]
        return OpInfo("function", name, fn, code)
    if "." in name:
        raise OpLookupError(f"unknown op {name!r}: {_dotted_hint(name)}")
    hint = suggest(name, list(functions))
    if not hint and name[:1].islower():
        hint = suggest(name[:1].upper() + name[1:], list(module_names()))
    raise OpLookupError(
        f"unknown op {name!r}: not a function of torch.nn.functional or torch" + hint
    )


def _dotted_hint(name: str) -> str:
    """What a dotted op name was probably meant to be."""
    module_path, _, last = name.rpartition(".")
    if module_path in ("torch.nn", "nn") and last in module_names():
        return f"torch.nn layers are named without their module: write {last!r}"
    if (
        module_path in ("torch", "torch.nn.functional", "F")
        and last in function_names()
    ):
        return f"functions are named without their module: write {last!r}"
    return (
        "a custom op is written package.module:Class, with a colon "
        f"(here {module_path + ':' + last!r})"
    )


def _resolve_custom(name: str, allow_imports: frozenset[str]) -> OpInfo:
    module_path, _, attr = name.partition(":")
    package = module_path.split(".")[0]
    if (
        not module_path
        or not attr
        or not all(p.isidentifier() for p in module_path.split("."))
    ):
        raise OpLookupError(f"custom op {name!r} must be written package.module:Name")
    if not attr.isidentifier():
        raise OpLookupError(f"custom op {name!r}: {attr!r} is not a Python name")
    if package not in allow_imports:
        raise OpLookupError(
            f"custom op {name!r} imports package {package!r}, which is not allowed; "
            f"allow it with --allow-import {package} (compile-model) or "
            f"allow_imports=[{package!r}] (nnspec.load)"
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise OpLookupError(
            f"cannot import {module_path!r} for op {name!r}: {exc}"
        ) from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise OpLookupError(
            f"module {module_path!r} has no {attr!r}" + suggest(attr, public)
        )
    target = getattr(module, attr)
    code = f"{module_path}.{attr}"
    if isinstance(target, type) and issubclass(target, nn.Module):
        return OpInfo("module", name, target, code, import_module=module_path)
    if callable(target):
        kind: OpKind = "factory" if _returns_module(target) else "function"
        return OpInfo(kind, name, target, code, import_module=module_path)
    raise OpLookupError(f"{name!r} is neither an nn.Module class nor a function")


def _returns_module(function: Any) -> bool:
    """True for a function annotated to return an nn.Module (a model factory)."""
    try:
        returned = typing.get_type_hints(function).get("return")
    except Exception:
        return False
    return isinstance(returned, type) and issubclass(returned, nn.Module)


@dataclass(frozen=True)
class Arguments:
    """What the compiler reads of an op's signature, read once per op."""

    names: tuple[str, ...]  # every parameter, in order
    #: Parameters other than ``**kwargs``, by name, in order.
    params: dict[str, inspect.Parameter]
    order: dict[str, int]  # the position of each of those
    positional: tuple[str, ...]  # those that may be given by position, in order
    positional_only: frozenset[str]
    accepted: tuple[str, ...]  # the names a keyword argument may have (no ``*args``)
    required: tuple[str, ...]  # without a default (``*args`` aside)
    defaults: tuple[tuple[str, Any], ...]
    types: dict[str, dict[str, Any]]  # JSON Schema of each annotated parameter
    var_keyword: bool  # takes ``**kwargs``


@cache
def arguments_of(target: Any) -> Arguments | None:
    """The op's parameters, when Python can tell (see ``signature_of``)."""
    signature = signature_of(target)
    if signature is None:
        return None
    every = list(signature.parameters.values())
    params = {p.name: p for p in every if p.kind is not p.VAR_KEYWORD}
    return Arguments(
        names=tuple(p.name for p in every),
        params=params,
        order={name: i for i, name in enumerate(params)},
        positional=tuple(
            p.name
            for p in params.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ),
        positional_only=frozenset(p.name for p in every if p.kind is p.POSITIONAL_ONLY),
        accepted=tuple(
            p.name for p in params.values() if p.kind is not p.VAR_POSITIONAL
        ),
        required=tuple(
            p.name
            for p in params.values()
            if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
        ),
        defaults=tuple((p.name, p.default) for p in every if p.default is not p.empty),
        types={name: json_type(p.annotation) for name, p in params.items()},
        var_keyword=len(params) < len(every),
    )


def input_names(op: OpInfo) -> list[str] | None:
    """The names an op's inputs may be given by (``in: {name: ref}``); None when any
    name may be accepted or Python cannot tell. Blocks name theirs in the spec."""
    if op.kind == "block":
        return None
    if op.kind == "module":
        try:
            signature = inspect.signature(op.target.forward)
        except (TypeError, ValueError):
            return None
        params = list(signature.parameters.values())[1:]
    else:
        found = signature_of(op.target)
        if found is None:
            return parameter_names(op.target) or None
        params = list(found.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not p.VAR_POSITIONAL]


# -- numeric arguments -----------------------------------------------------------

#: Most elements one tensor may have: a declared input, a node's output (per sample:
#: the batch dimension is not counted), a parameter. Far beyond any real model, and
#: far below what makes torch's size arithmetic overflow.
MAX_ELEMENTS = 2**48
#: Most layers one recurrent or transformer module may stack (``num_layers``).
MAX_LAYERS = 10_000


@dataclass(frozen=True)
class Limit:
    """The values an integer (or each integer of a list) may take.

    ``kind`` is one of: ``size`` (>= 1), ``offset`` (>= 0), ``size_or_infer`` (-1 or
    >= 1, as in reshape), ``scale`` (a number > 0) and ``dim`` (a dimension of the
    node's first input: -rank .. rank-1). Values that are not numbers (``'same'``,
    None) are left to the type checks and to torch.
    """

    kind: Literal["size", "offset", "size_or_infer", "scale", "dim"]
    high: int = MAX_ELEMENTS

    def problem(self, value: Any, rank: int | None) -> str | None:
        """What is wrong with one number, as 'must be ..., got ...'; None if it fits."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.kind == "dim":
            if not isinstance(value, int) or rank is None or -rank <= value < rank:
                return None
            return f"must be in {-rank}..{rank - 1} for an input of {rank} dimensions"
        if self.kind == "scale":
            if not value > 0:
                return "must be > 0"
        elif not isinstance(value, int):
            return None
        elif self.kind == "size" and value < 1:
            return "must be >= 1"
        elif self.kind == "offset" and value < 0:
            return "must be >= 0"
        elif self.kind == "size_or_infer" and value < 1 and value != -1:
            return "must be -1 or >= 1"
        if not value <= self.high:  # also NaN and infinity
            high = "2**48" if self.high == MAX_ELEMENTS else str(self.high)
            return f"must be <= {high}"
        return None


_SIZE, _OFFSET, _INFER = Limit("size"), Limit("offset"), Limit("size_or_infer")
_SCALE, _DIM, _LAYERS = Limit("scale"), Limit("dim"), Limit("size", MAX_LAYERS)
_CONV = {
    "in_channels": _SIZE,
    "out_channels": _SIZE,
    "kernel_size": _SIZE,
    "stride": _SIZE,
    "padding": _OFFSET,
    "dilation": _SIZE,
    "groups": _SIZE,
}
_CONV_FN = {"stride": _SIZE, "padding": _OFFSET, "dilation": _SIZE, "groups": _SIZE}
_UNPOOL = {"kernel_size": _SIZE, "stride": _SIZE, "padding": _OFFSET}
_POOL = {
    "Max": {**_UNPOOL, "dilation": _SIZE},
    "Avg": {**_UNPOOL, "divisor_override": _SIZE},
    "LP": {"kernel_size": _SIZE, "stride": _SIZE},
}
_UNFOLD = {"kernel_size": _SIZE, "dilation": _SIZE, "padding": _OFFSET, "stride": _SIZE}
_FOLD = {"output_size": _SIZE, **_UNFOLD}
_RESAMPLE = {"size": _SIZE, "scale_factor": _SCALE}
_RNN = {"input_size": _SIZE, "hidden_size": _SIZE, "num_layers": _LAYERS}
_ATTENTION = {"d_model": _SIZE, "nhead": _SIZE, "dim_feedforward": _SIZE}

#: The numeric arguments checked before any shape is worked out: op -> argument ->
#: limit. Ops with shape rules, and those whose arguments size a tensor.
ARG_LIMITS: dict[str, dict[str, Limit]] = {
    **{f"Conv{n}d": _CONV for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": {**_CONV, "output_padding": _OFFSET} for n in (1, 2, 3)},
    **{f"conv{n}d": _CONV_FN for n in (1, 2, 3)},
    **{
        f"conv_transpose{n}d": {**_CONV_FN, "output_padding": _OFFSET}
        for n in (1, 2, 3)
    },
    **{f"{kind}Pool{n}d": _POOL[kind] for kind in _POOL for n in (1, 2, 3)},
    **{f"{kind.lower()}_pool{n}d": _POOL[kind] for kind in _POOL for n in (1, 2, 3)},
    "AvgPool1d": _UNPOOL,  # no divisor_override in 1d
    "avg_pool1d": _UNPOOL,
    **{f"MaxUnpool{n}d": _UNPOOL for n in (1, 2, 3)},
    **{
        f"FractionalMaxPool{n}d": {"kernel_size": _SIZE, "output_size": _SIZE}
        for n in (2, 3)
    },
    **{
        f"Adaptive{kind}Pool{n}d": {"output_size": _SIZE}
        for kind in ("Avg", "Max")
        for n in (1, 2, 3)
    },
    **{
        f"adaptive_{kind}_pool{n}d": {"output_size": _SIZE}
        for kind in ("avg", "max")
        for n in (1, 2, 3)
    },
    "Linear": {"in_features": _SIZE, "out_features": _SIZE},
    "Bilinear": {"in1_features": _SIZE, "in2_features": _SIZE, "out_features": _SIZE},
    "Embedding": {"num_embeddings": _SIZE, "embedding_dim": _SIZE},
    "EmbeddingBag": {"num_embeddings": _SIZE, "embedding_dim": _SIZE},
    "one_hot": {"num_classes": _INFER},
    **{
        f"{kind}Norm{n}d": {"num_features": _SIZE}
        for kind in ("Batch", "Instance")
        for n in (1, 2, 3)
    },
    "SyncBatchNorm": {"num_features": _SIZE},
    "GroupNorm": {"num_groups": _SIZE, "num_channels": _SIZE},
    "group_norm": {"num_groups": _SIZE},
    "LayerNorm": {"normalized_shape": _SIZE},
    "RMSNorm": {"normalized_shape": _SIZE},
    "layer_norm": {"normalized_shape": _SIZE},
    "LocalResponseNorm": {"size": _SIZE},
    "Upsample": _RESAMPLE,
    "UpsamplingNearest2d": _RESAMPLE,
    "UpsamplingBilinear2d": _RESAMPLE,
    "interpolate": _RESAMPLE,
    "upsample": _RESAMPLE,
    "Flatten": {"start_dim": _DIM, "end_dim": _DIM},
    "flatten": {"start_dim": _DIM, "end_dim": _DIM},
    "Unflatten": {"dim": _DIM, "unflattened_size": _INFER},
    "unflatten": {"dim": _DIM, "sizes": _INFER},
    "reshape": {"shape": _INFER},
    "chunk": {"chunks": _SIZE, "dim": _DIM},
    **{name: {"dim": _DIM} for name in ("Softmax", "LogSoftmax", "Softmin", "GLU")},
    **{name: {"dim": _DIM} for name in ("softmax", "log_softmax", "softmin", "glu")},
    "PixelShuffle": {"upscale_factor": _SIZE},
    "PixelUnshuffle": {"downscale_factor": _SIZE},
    "pixel_shuffle": {"upscale_factor": _SIZE},
    "pixel_unshuffle": {"downscale_factor": _SIZE},
    "Fold": _FOLD,
    "Unfold": _UNFOLD,
    "fold": _FOLD,
    "unfold": _UNFOLD,
    "ChannelShuffle": {"groups": _SIZE},
    "RNN": _RNN,
    "LSTM": {**_RNN, "proj_size": _OFFSET},
    "GRU": _RNN,
    "RNNCell": {"input_size": _SIZE, "hidden_size": _SIZE},
    "LSTMCell": {"input_size": _SIZE, "hidden_size": _SIZE},
    "GRUCell": {"input_size": _SIZE, "hidden_size": _SIZE},
    "MultiheadAttention": {
        "embed_dim": _SIZE,
        "num_heads": _SIZE,
        "kdim": _SIZE,
        "vdim": _SIZE,
    },
    "TransformerEncoderLayer": _ATTENTION,
    "TransformerDecoderLayer": _ATTENTION,
    "Transformer": {
        **_ATTENTION,
        "num_encoder_layers": _LAYERS,
        "num_decoder_layers": _LAYERS,
    },
}


def limit_problems(
    op_name: str, arg: str, value: Any, rank: int | None
) -> list[tuple[int | None, str]]:
    """What is wrong with an argument's value under ARG_LIMITS: (index in the list or
    None, 'stride must be >= 1, got 0') for each number out of its range."""
    limit = ARG_LIMITS.get(op_name, {}).get(arg)
    if limit is None:
        return []
    if isinstance(value, (list, tuple)):
        items: list[tuple[int | None, Any]] = list(enumerate(value))
    else:
        items = [(None, value)]
    found = []
    for index, item in items:
        problem = limit.problem(item, rank)
        if problem is not None:
            name = arg if index is None else f"{arg}[{index}]"
            found.append((index, f"{name} {problem}, got {item!r}"))
    return found
