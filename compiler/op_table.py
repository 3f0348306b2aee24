"""The op table: one record per torch op, holding everything the compiler knows of it.

A record (``OpRecord``) says of one torch.nn layer or tensor function: its kind, the
constructor arguments inferred from the input (``spec/torch_ops.py`` names them: the
editor schema reads them too), which of its arguments generated code writes by
position, whether it takes its tensor inputs as one list, the ranges of its numeric
arguments, and its closed-form shape rule (``shape_rules.py``). Every fact is given
through one function, ``define_op``; ``record_of`` answers for any resolved op (an
op without a record, such as a custom import, has no facts: no rule, no limits).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..spec.torch_ops import INFERRED_ARGS
from . import layout_rules as layout
from . import recurrent_rules
from . import shape_rules as rules
from .ops import OpInfo
from .shape_rules import Rule

__all__ = [
    "ARG_LIMITS",
    "CREATION_OPS",
    "MAX_ELEMENTS",
    "MAX_LAYERS",
    "OPS",
    "POSITIONAL_NAMES",
    "InferredArg",
    "Limit",
    "OpRecord",
    "define_op",
    "limit_problems",
    "record_of",
]

#: Most elements one tensor may have: a declared input, a node's output (per sample:
#: the batch dimension is not counted), a parameter. Far beyond any real model, and
#: far below what makes torch's size arithmetic overflow.
MAX_ELEMENTS = 2**48
#: Most layers one recurrent or transformer module may stack (``num_layers``).
MAX_LAYERS = 10_000

#: Constructor arguments generated code writes by position when they lead the
#: signature (``nn.Linear(64, 10)``); every other argument is written by keyword.
POSITIONAL_NAMES = frozenset(
    {
        "in_channels", "out_channels", "in_features", "out_features", "num_features",
        "num_groups", "num_channels", "normalized_shape", "input_size", "hidden_size",
        "embed_dim", "num_heads", "d_model", "nhead", "num_embeddings", "embedding_dim",
        "in1_features", "in2_features",
    }
)  # fmt: skip


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


@dataclass(frozen=True)
class InferredArg:
    """A constructor argument filled from the first input's size in ``dim`` (-1: the
    last). ``trailing``: the argument may also list the input's last sizes
    (``normalized_shape``), and a written value is checked against those."""

    name: str
    dim: int
    trailing: bool = False


@dataclass(frozen=True)
class OpRecord:
    """Everything the compiler knows of one op besides its signature."""

    name: str
    kind: Literal["module", "function"]
    rule: Rule | None = None  # the closed-form shape rule; None: run on meta
    #: Positional parameters a function's rule reads after the inputs, with defaults.
    rule_params: tuple[tuple[str, Any], ...] = ()
    inferred: tuple[InferredArg, ...] = ()
    positional: frozenset[str] = POSITIONAL_NAMES
    sequence: bool = False  # takes its tensor inputs as one list (cat, stack)
    limits: Mapping[str, Limit] = field(default_factory=dict)
    #: How many positional arguments come before the tensor inputs (einsum's
    #: equation).
    leading: int = 0
    #: Makes a tensor from its arguments alone (arange, ones): takes no input
    #: by default, and ``like:`` gives its device.
    creation: bool = False

    @property
    def rule_name(self) -> str:
        """How an internal error names the rule: ``shape_rules.conv``."""
        rule = self.rule
        while isinstance(rule, functools.partial):
            rule = rule.func
        name = getattr(rule, "__qualname__", repr(rule))
        return f"{getattr(rule, '__module__', '?').rsplit('.', 1)[-1]}.{name}"

    def limit_problems(
        self, arg: str, value: Any, rank: int | None
    ) -> list[tuple[int | None, str]]:
        """What is wrong with an argument's value under the record's limits: (index in
        the list or None, 'stride must be >= 1, got 0') for each number out of range."""
        limit = self.limits.get(arg)
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


#: Functions that make a tensor from their arguments alone.
CREATION_OPS = (
    "arange",
    "ones",
    "zeros",
    "full",
    "empty",
    "eye",
    "linspace",
    "rand",
    "randn",
)

#: The table: op name -> record, for torch.nn layers (CapWords) and functions.
OPS: dict[str, OpRecord] = {}
_NO_FACTS: dict[tuple[str, str], OpRecord] = {}
_TRAILING = frozenset({"normalized_shape"})


def define_op(
    name: str,
    *,
    rule: Rule | None = None,
    rule_params: tuple[tuple[str, Any], ...] = (),
    sequence: bool = False,
    limits: Mapping[str, Limit] | None = None,
    leading: int = 0,
    creation: bool = False,
) -> OpRecord:
    """Add facts to the record of op ``name``, making it on first use. A fact may be
    given once: a second rule (or second limits) for the same op is a mistake here."""
    record = OPS.get(name)
    if record is None:
        kind: Literal["module", "function"] = (
            "module" if name[:1].isupper() else "function"
        )
        inferred = tuple(
            InferredArg(arg, dim, arg in _TRAILING)
            for arg, dim in INFERRED_ARGS.get(name, ())
        )
        record = OpRecord(name, kind, inferred=inferred)
    changes: dict[str, Any] = {}
    if rule is not None:
        assert record.rule is None, f"{name} has two shape rules"
        changes["rule"] = rule
        changes["rule_params"] = rule_params
    if sequence:
        changes["sequence"] = True
    if leading:
        changes["leading"] = leading
    if creation:
        changes["creation"] = True
    if limits is not None:
        assert not record.limits, f"{name} has two sets of limits"
        changes["limits"] = dict(limits)
    OPS[name] = replace(record, **changes)
    return OPS[name]


def record_of(op: OpInfo) -> OpRecord:
    """The record of a resolved op: the table's for a torch op, else one of no facts
    (a block, a custom import: their own names never reach the table's rules)."""
    if op.import_module is None and op.kind in ("module", "function"):
        found = OPS.get(op.name)
        if found is not None:
            return found
    key = (op.kind, op.name)
    record = _NO_FACTS.get(key)
    if record is None:
        kind: Literal["module", "function"] = (
            "function" if op.kind == "function" else "module"
        )
        record = _NO_FACTS[key] = OpRecord(op.name, kind)
    return record


def limit_problems(
    op_name: str, arg: str, value: Any, rank: int | None
) -> list[tuple[int | None, str]]:
    """``OpRecord.limit_problems`` of the torch op named ``op_name`` (none if unknown)."""
    record = OPS.get(op_name)
    return record.limit_problems(arg, value, rank) if record is not None else []


# -- shape rules -------------------------------------------------------------------

_ELEMENTWISE_MODULES = (
    "Identity", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU",
    "GELU", "SiLU", "Mish", "Sigmoid", "Tanh", "Hardtanh", "Hardswish", "Hardsigmoid",
    "Softplus", "Softsign", "Tanhshrink", "Softshrink", "Hardshrink", "LogSigmoid",
    "Threshold", "Softmax", "LogSoftmax", "Softmin", "Softmax2d", "Dropout", "Dropout1d",
    "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "TransformerEncoderLayer",
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS = (
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
    "tanh", "hardtanh", "hardswish", "hardsigmoid", "softplus", "softsign", "logsigmoid",
    "softmax", "log_softmax", "softmin", "dropout", "dropout1d", "dropout2d", "dropout3d",
    "alpha_dropout", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "square", "sin", "cos",
    "clamp", "clip", "normalize", "sign", "floor", "ceil", "round", "reciprocal",
)  # fmt: skip
_BROADCAST_FUNCTIONS = (
    "add", "sub", "mul", "div", "maximum", "minimum", "pow", "true_divide", "multiply",
    "subtract", "divide", "atan2", "fmod", "remainder",
)  # fmt: skip
#: Functions that take their tensor inputs as one list.
_SEQUENCE_FUNCTIONS = (
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack",
)  # fmt: skip

for _name in (*_ELEMENTWISE_MODULES, *_ELEMENTWISE_FUNCTIONS):
    define_op(_name, rule=rules.same)
for _name in _BROADCAST_FUNCTIONS:
    define_op(_name, rule=rules.broadcast)
for _n, _ranks in ((1, (2, 3)), (2, (4,)), (3, (5,))):
    _conv = functools.partial(rules.conv, n=_n, transposed=False)
    define_op(f"Conv{_n}d", rule=_conv)
    _transposed = functools.partial(rules.conv, n=_n, transposed=True)
    define_op(f"ConvTranspose{_n}d", rule=_transposed)
    for _kind in ("Batch", "Instance"):
        _norm = functools.partial(rules.norm, ranks=_ranks, arg="num_features")
        define_op(f"{_kind}Norm{_n}d", rule=_norm)
    define_op(
        f"MaxPool{_n}d", rule=functools.partial(rules.pool, n=_n, has_dilation=True)
    )
    define_op(
        f"AvgPool{_n}d", rule=functools.partial(rules.pool, n=_n, has_dilation=False)
    )
    for _kind in ("Avg", "Max"):
        define_op(
            f"Adaptive{_kind}Pool{_n}d",
            rule=functools.partial(rules.adaptive_pool, n=_n),
        )
define_op(
    "SyncBatchNorm",
    rule=functools.partial(rules.norm, ranks=(2, 3, 4, 5), arg="num_features"),
)
define_op(
    "GroupNorm",
    rule=functools.partial(rules.norm, ranks=(2, 3, 4, 5), arg="num_channels"),
)
define_op("Linear", rule=rules.linear)
define_op("LayerNorm", rule=rules.layer_norm)
define_op("RMSNorm", rule=rules.layer_norm)
define_op("Flatten", rule=rules.flatten_module)
define_op(
    "flatten",
    rule=rules.flatten_function,
    rule_params=(("start_dim", 0), ("end_dim", -1)),
)
for _name in ("cat", "concat", "concatenate"):
    define_op(_name, rule=rules.cat, rule_params=(("dim", 0),))
for _name in _SEQUENCE_FUNCTIONS:
    define_op(_name, sequence=True)
define_op("einsum", leading=1)
for _name in CREATION_OPS:
    define_op(_name, creation=True)
define_op("Upsample", rule=rules.upsample)
# Ops that only move, split or drop dimensions: their sizes stay symbolic.
define_op("permute", rule=layout.permute, rule_params=(("dims", None),))
for _name, _first, _second in (
    ("transpose", "dim0", "dim1"),
    ("swapdims", "dim0", "dim1"),
    ("swapaxes", "axis0", "axis1"),
):
    define_op(
        _name,
        rule=functools.partial(layout.transpose, first=_first, second=_second),
        rule_params=((_first, None), (_second, None)),
    )
for _name in ("movedim", "moveaxis"):
    define_op(
        _name,
        rule=layout.movedim,
        rule_params=(("source", None), ("destination", None)),
    )
define_op(
    "unflatten",
    rule=functools.partial(layout.unflatten, sizes_arg="sizes"),
    rule_params=(("dim", None), ("sizes", None)),
)
define_op(
    "Unflatten", rule=functools.partial(layout.unflatten, sizes_arg="unflattened_size")
)
define_op("select", rule=layout.select, rule_params=(("dim", None), ("index", None)))
define_op(
    "split",
    rule=layout.split,
    rule_params=(("split_size_or_sections", None), ("dim", 0)),
)
define_op("chunk", rule=layout.chunk, rule_params=(("chunks", None), ("dim", 0)))
define_op("squeeze", rule=layout.squeeze, rule_params=(("dim", layout.SQUEEZE_ALL),))
define_op("unsqueeze", rule=layout.unsqueeze, rule_params=(("dim", None),))
define_op("reshape", rule=layout.reshape, rule_params=(("shape", None),))
define_op("Embedding", rule=rules.embedding)
for _name in ("RNN", "LSTM", "GRU"):
    define_op(_name, rule=recurrent_rules.recurrent)

# -- numeric arguments ---------------------------------------------------------------
# Checked before any shape is worked out: ops with shape rules, and those whose
# arguments size a tensor.

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
_CELL = {"input_size": _SIZE, "hidden_size": _SIZE}

_LIMITS: dict[str, Mapping[str, Limit]] = {
    "Linear": {"in_features": _SIZE, "out_features": _SIZE},
    "Bilinear": {"in1_features": _SIZE, "in2_features": _SIZE, "out_features": _SIZE},
    "Embedding": {"num_embeddings": _SIZE, "embedding_dim": _SIZE},
    "EmbeddingBag": {"num_embeddings": _SIZE, "embedding_dim": _SIZE},
    "one_hot": {"num_classes": _INFER},
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
    "RNNCell": _CELL,
    "LSTMCell": _CELL,
    "GRUCell": _CELL,
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
    "AvgPool1d": _UNPOOL,  # no divisor_override in 1d
    "avg_pool1d": _UNPOOL,
}
for _n in (1, 2, 3):
    _LIMITS[f"Conv{_n}d"] = _CONV
    _LIMITS[f"ConvTranspose{_n}d"] = {**_CONV, "output_padding": _OFFSET}
    _LIMITS[f"conv{_n}d"] = _CONV_FN
    _LIMITS[f"conv_transpose{_n}d"] = {**_CONV_FN, "output_padding": _OFFSET}
    for _kind, _limits in _POOL.items():
        _LIMITS.setdefault(f"{_kind}Pool{_n}d", _limits)
        _LIMITS.setdefault(f"{_kind.lower()}_pool{_n}d", _limits)
    _LIMITS[f"MaxUnpool{_n}d"] = _UNPOOL
    for _kind in ("Avg", "Max"):
        _LIMITS[f"Adaptive{_kind}Pool{_n}d"] = {"output_size": _SIZE}
        _LIMITS[f"adaptive_{_kind.lower()}_pool{_n}d"] = {"output_size": _SIZE}
    for _kind in ("Batch", "Instance"):
        _LIMITS[f"{_kind}Norm{_n}d"] = {"num_features": _SIZE}
for _n in (2, 3):
    _LIMITS[f"FractionalMaxPool{_n}d"] = {"kernel_size": _SIZE, "output_size": _SIZE}
for _name, _facts in _LIMITS.items():
    define_op(_name, limits=_facts)
for _name in INFERRED_ARGS:
    define_op(_name)  # every op with inferred arguments has a record

#: op -> argument -> limit, for every op with limits (a view of the table).
ARG_LIMITS: dict[str, dict[str, Limit]] = {
    name: dict(record.limits) for name, record in OPS.items() if record.limits
}
