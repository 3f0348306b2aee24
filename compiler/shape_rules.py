"""Closed-form shape rules for the common ops (``op_table.py`` says which op has which).

A rule takes the op's tensor inputs and its bound arguments and returns the output
value, with symbolic sizes where the output's size follows from an argument. It
raises ShapeError for inputs the op cannot take, and Fallback where it does not
cover a variant (an argument it does not read the type of, say): then the shape is
found by running the op on the meta device. Any other exception is a bug in the
rule, and the compiler reports it as one.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .expressions import Val
from .sums import simplify
from .values import TensorValue, Value

__all__ = [
    "Fallback",
    "Rule",
    "ShapeCall",
    "ShapeError",
    "ShapeRuleBug",
    "adaptive_pool",
    "broadcast",
    "cat",
    "conv",
    "embedding",
    "flatten_function",
    "flatten_module",
    "layer_norm",
    "linear",
    "norm",
    "pool",
    "same",
    "upsample",
]


class ShapeError(Exception):
    """Inputs an op cannot take; the compiler adds the node and position.

    ``at`` names the node's key the error is about, where the spec writes it: ``in``
    for the inputs, or an argument.
    """

    def __init__(self, message: str, at: str | None = None) -> None:
        super().__init__(message)
        self.at = at


class Fallback(Exception):
    """The rule does not cover this case: use meta execution."""


class ShapeRuleBug(Exception):
    """A shape rule raised something other than ShapeError or Fallback: a bug in
    nnspec, reported as one (naming the op and the rule), never run around."""


@dataclass
class ShapeCall:
    op: str
    inputs: list[Value]
    args: dict[str, Val]

    def arg(self, name: str, default: Any = None) -> Any:
        val = self.args.get(name)
        return default if val is None else val.value

    def sym(self, name: str) -> ast.expr | None:
        val = self.args.get(name)
        return None if val is None else val.sym

    def tensor(self, i: int = 0) -> TensorValue:
        if i >= len(self.inputs):
            raise ShapeError(
                f"{self.op} needs {i + 1} input(s), received {len(self.inputs)}",
                at="in",
            )
        value = self.inputs[i]
        if not isinstance(value, TensorValue):
            raise ShapeError(
                f"{self.op} takes a tensor, received a tuple {value.render()}", at="in"
            )
        return value

    def only_tensor(self) -> TensorValue:
        if len(self.inputs) != 1:
            raise ShapeError(
                f"{self.op} takes 1 input, received {len(self.inputs)}", at="in"
            )
        return self.tensor(0)


Rule = Callable[[ShapeCall], Value]


def _ntuple(value: Any, n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ShapeError(f"{what} needs {n} values, received {list(value)}")
        if not all(isinstance(v, int) for v in value):
            raise Fallback
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Fallback
    return (value,) * n


def _expect_rank(
    call: ShapeCall, x: TensorValue, ranks: tuple[int, ...], layout: str
) -> None:
    if x.rank not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(
            f"{call.op} expects {want} input {layout}, received {x.render()}"
        )


def _check_size(call: ShapeCall, arg: str, x: TensorValue, dim: int) -> None:
    want = call.arg(arg)
    have = x.shape[dim]
    if isinstance(want, int) and want != have:
        where = "last dimension" if dim in (-1, x.rank - 1) else f"dim {dim % x.rank}"
        raise ShapeError(
            f"{call.op} was built for {arg}={want}, but its input {x.render()} "
            f"has {have} in its {where}",
            at=arg,
        )


def same(call: ShapeCall) -> Value:
    """Elementwise ops: the output is the one input's shape."""
    return call.only_tensor()


def broadcast(call: ShapeCall) -> Value:
    """Binary elementwise functions: the inputs' shapes broadcast."""
    tensors = [v for v in call.inputs if isinstance(v, TensorValue)]
    if len(tensors) != len(call.inputs) or not tensors:
        raise Fallback
    rank = max(t.rank for t in tensors)
    shape: list[int] = []
    sym: list[ast.expr | None] = []
    for k in range(rank):
        size, dim_sym = 1, None
        for t in tensors:
            j = k - (rank - t.rank)
            if j < 0:
                continue
            n = t.shape[j]
            if n == size or n == 1:
                if dim_sym is None and n == size:
                    dim_sym = t.sym[j]
                continue
            if size != 1:
                shapes = " and ".join(x.render() for x in tensors)
                raise ShapeError(
                    f"input shapes {shapes} do not broadcast: dim {k} is {size} and {n}",
                    at="in",
                )
            size, dim_sym = n, t.sym[j]
        shape.append(size)
        sym.append(dim_sym)
    first = max(tensors, key=lambda t: t.rank)
    # A tensor without a batch dimension (a bare parameter) broadcasts against
    # the batch of another: the output keeps that one's.
    batched = [t for t in tensors if t.batch_dim is not None]
    if first.batch_dim is None and batched:
        t = max(batched, key=lambda t: t.rank)
        assert t.batch_dim is not None
        return first.with_shape(shape, sym, batch_dim=t.batch_dim + rank - t.rank)
    return first.with_shape(shape, sym)


def conv(call: ShapeCall, n: int, transposed: bool) -> Value:
    """ConvNd and ConvTransposeNd."""
    x = call.only_tensor()
    _expect_rank(call, x, (n + 2,), "(B, C, " + ", ".join("DHW"[3 - n :]) + ")")
    _check_size(call, "in_channels", x, 1)
    k = _ntuple(call.arg("kernel_size"), n, "kernel_size")
    s = _ntuple(call.arg("stride", 1), n, "stride")
    d = _ntuple(call.arg("dilation", 1), n, "dilation")
    padding = call.arg("padding", 0)
    if isinstance(padding, str):
        if transposed:
            raise Fallback
        if padding == "valid":
            p = (0,) * n
        elif padding == "same":
            spatial = x.shape[2:]
            return x.with_shape((x.shape[0], call.arg("out_channels"), *spatial),
                                (x.sym[0], call.sym("out_channels"), *x.sym[2:]))  # fmt: skip
        else:
            raise Fallback
    else:
        p = _ntuple(padding, n, "padding")
    out_spatial = []
    for i in range(n):
        size = x.shape[2 + i]
        if transposed:
            op = _ntuple(call.arg("output_padding", 0), n, "output_padding")
            out = (size - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1
        else:
            out = (size + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
        if out < 1:
            raise ShapeError(
                f"input {x.render()} is too small for {call.op} with kernel_size={list(k)}, "
                f"padding={list(p)}, dilation={list(d)}: output size would be {out}"
            )
        out_spatial.append(out)
    out_channels = call.arg("out_channels")
    spatial_sym = [
        x.sym[2 + i]
        if not transposed and s[i] == 1 and 2 * p[i] == d[i] * (k[i] - 1)
        else None
        for i in range(n)
    ]
    return x.with_shape(
        (x.shape[0], out_channels, *out_spatial),
        (x.sym[0], call.sym("out_channels"), *spatial_sym),
    )


def linear(call: ShapeCall) -> Value:
    x = call.only_tensor()
    if x.rank < 2:
        raise ShapeError(
            f"Linear expects input (B, ..., features), received {x.render()}"
        )
    _check_size(call, "in_features", x, x.rank - 1)
    return x.with_shape(
        (*x.shape[:-1], call.arg("out_features")),
        (*x.sym[:-1], call.sym("out_features")),
    )


def norm(call: ShapeCall, ranks: tuple[int, ...], arg: str) -> Value:
    x = call.only_tensor()
    _expect_rank(call, x, ranks, "(B, C, ...)")
    _check_size(call, arg, x, 1)
    return x


def layer_norm(call: ShapeCall) -> Value:
    x = call.only_tensor()
    shape = call.arg("normalized_shape")
    try:
        shape = [shape] if isinstance(shape, int) else list(shape)
    except TypeError:
        raise Fallback from None  # not a size or sizes: torch says what it takes
    if list(x.shape[x.rank - len(shape) :]) != shape or len(shape) >= x.rank:
        raise ShapeError(
            f"{call.op} normalises the last dimensions {shape}, but its input is "
            f"{x.render()}",
            at="normalized_shape",
        )
    return x


def pool(call: ShapeCall, n: int, has_dilation: bool) -> Value:
    x = call.only_tensor()
    _expect_rank(call, x, (n + 1, n + 2), "(B, C, " + ", ".join("DHW"[3 - n :]) + ")")
    if call.arg("return_indices", False):
        raise Fallback
    k = _ntuple(call.arg("kernel_size"), n, "kernel_size")
    stride = call.arg("stride")
    s = k if stride is None or stride == [] else _ntuple(stride, n, "stride")
    p = _ntuple(call.arg("padding", 0), n, "padding")
    d = _ntuple(call.arg("dilation", 1), n, "dilation") if has_dilation else (1,) * n
    ceil = bool(call.arg("ceil_mode", False))
    lead = x.rank - n
    out_spatial = []
    for i in range(n):
        size = x.shape[lead + i]
        span = size + 2 * p[i] - d[i] * (k[i] - 1) - 1
        out = (math.ceil(span / s[i]) if ceil else span // s[i]) + 1
        if ceil and (out - 1) * s[i] >= size + p[i]:
            out -= 1
        if out < 1:
            raise ShapeError(
                f"input {x.render()} is too small for {call.op} with kernel_size={list(k)}: "
                f"output size would be {out}"
            )
        out_spatial.append(out)
    spatial_sym = [
        _floordiv(x.sym[lead + i], k[i])
        if k[i] == s[i] and p[i] == 0 and d[i] == 1 and not ceil
        else None
        for i in range(n)
    ]
    return x.with_shape((*x.shape[:lead], *out_spatial), (*x.sym[:lead], *spatial_sym))


def _floordiv(sym: ast.expr | None, k: int) -> ast.expr | None:
    if sym is None:
        return None
    if k == 1:
        return sym
    return ast.BinOp(sym, ast.FloorDiv(), ast.Constant(k))


def adaptive_pool(call: ShapeCall, n: int) -> Value:
    x = call.only_tensor()
    _expect_rank(call, x, (n + 1, n + 2), "(B, C, ...)")
    if call.arg("return_indices", False):
        raise Fallback
    size = call.arg("output_size")
    sizes = list(size) if isinstance(size, (list, tuple)) else [size] * n
    if len(sizes) != n:
        raise ShapeError(f"{call.op} output_size needs {n} values, received {size}")
    if not all(s is None or _converts_to_int(s) for s in sizes):
        raise Fallback  # not sizes: torch says what it takes
    lead = x.rank - n
    out = [x.shape[lead + i] if s is None else s for i, s in enumerate(sizes)]
    written = call.sym("output_size")
    if isinstance(size, (list, tuple)):
        items = written.elts if isinstance(written, (ast.List, ast.Tuple)) else []
        given: list[ast.expr | None] = list(items) if len(items) == n else [None] * n
    else:
        given = [written] * n
    sym = [
        x.sym[lead + i] if s is None else (given[i] if type(s) is int else None)
        for i, s in enumerate(sizes)
    ]
    return x.with_shape((*x.shape[:lead], *out), (*x.sym[:lead], *sym))


def _converts_to_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def _flatten_shape(call: ShapeCall, start: int, end: int) -> Value:
    x = call.only_tensor()
    if x.rank == 0 or not all(isinstance(v, (int, float)) for v in (start, end)):
        raise Fallback
    start, end = start % x.rank, end % x.rank
    if start > end:
        raise ShapeError(f"flatten start_dim {start} comes after end_dim {end}")
    if not isinstance(start, int) or not isinstance(end, int):
        raise Fallback  # not dims: torch says what it takes
    if x.batch_dim is not None and start <= x.batch_dim <= end and start != end:
        raise Fallback
    merged = math.prod(x.shape[start : end + 1])
    syms = x.sym[start : end + 1]
    sym: ast.expr | None = None
    if all(s is not None for s in syms):
        # Sizes of 1 (a pooled 1x1 map) are no factors of the product.
        factors = [s for s in syms if ast.dump(s) != ast.dump(ast.Constant(1))]  # type: ignore[arg-type]
        sym = factors[0] if factors else ast.Constant(1)
        for s in factors[1:]:
            sym = ast.BinOp(sym, ast.Mult(), s)  # type: ignore[arg-type]
    return x.with_shape(
        (*x.shape[:start], merged, *x.shape[end + 1 :]),
        (*x.sym[:start], sym, *x.sym[end + 1 :]),
    )


def flatten_module(call: ShapeCall) -> Value:
    return _flatten_shape(call, call.arg("start_dim", 1), call.arg("end_dim", -1))


def flatten_function(call: ShapeCall) -> Value:
    return _flatten_shape(call, call.arg("start_dim", 0), call.arg("end_dim", -1))


def cat(call: ShapeCall) -> Value:
    tensors = [v for v in call.inputs if isinstance(v, TensorValue)]
    if len(tensors) != len(call.inputs) or not tensors:
        raise Fallback
    first = tensors[0]
    dim = call.arg("dim", 0)
    if not isinstance(dim, int) or not -first.rank <= dim < first.rank:
        raise ShapeError(
            f"cat dim={dim} is out of range for {first.render()}", at="dim"
        )
    dim %= first.rank
    if dim == first.batch_dim:
        raise Fallback
    for t in tensors[1:]:
        if t.rank != first.rank:
            raise ShapeError(
                f"input shapes {first.render()} and {t.render()} have different ranks",
                at="in",
            )
        for k in range(first.rank):
            if k != dim and t.shape[k] != first.shape[k]:
                raise ShapeError(
                    f"input shapes {first.render()} and {t.render()} differ in dim {k}",
                    at="in",
                )
    total = sum(t.shape[dim] for t in tensors)
    syms = [t.sym[dim] for t in tensors]
    sym: ast.expr | None = None
    if all(s is not None for s in syms):
        sym = syms[0]
        for s in syms[1:]:
            sym = ast.BinOp(sym, ast.Add(), s)  # type: ignore[arg-type]
        sym = simplify(sym)  # type: ignore[arg-type]
    shape = list(first.shape)
    shape[dim] = total
    out_sym = list(first.sym)
    out_sym[dim] = sym
    return first.with_shape(shape, out_sym)


def upsample(call: ShapeCall) -> Value:
    x = call.only_tensor()
    n = x.rank - 2
    if n < 1:
        raise ShapeError(
            f"Upsample expects input (B, C, ...spatial), received {x.render()}"
        )
    size, scale = call.arg("size"), call.arg("scale_factor")
    if size is not None:
        out = list(_ntuple(size, n, "size"))
    elif scale is not None:
        scales = list(scale) if isinstance(scale, (list, tuple)) else [scale] * n
        if len(scales) != n:
            raise ShapeError(
                f"Upsample scale_factor needs {n} values, received {scale}"
            )
        try:
            out = [math.floor(x.shape[2 + i] * float(scales[i])) for i in range(n)]
            sym = [
                _times(x.sym[2 + i], scales[i])
                if float(scales[i]).is_integer()
                else None
                for i in range(n)
            ]
        except (TypeError, ValueError):
            raise Fallback from None  # not numbers: torch says what it takes
        return x.with_shape((*x.shape[:2], *out), (*x.sym[:2], *sym))
    else:
        raise ShapeError("Upsample needs size or scale_factor")
    return x.with_shape((*x.shape[:2], *out), (*x.sym[:2], *([None] * n)))


def _times(sym: ast.expr | None, factor: float) -> ast.expr | None:
    if sym is None:
        return None
    return ast.BinOp(sym, ast.Mult(), ast.Constant(int(factor)))


def embedding(call: ShapeCall) -> Value:
    x = call.only_tensor()
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise ShapeError(
            f"Embedding takes integer indices, received {str(x.dtype).replace('torch.', '')} "
            f"(declare the input with dtype: int64)"
        )
    import torch

    return x.with_shape(
        (*x.shape, call.arg("embedding_dim")),
        (*x.sym, call.sym("embedding_dim")),
        dtype=torch.get_default_dtype(),
    )
