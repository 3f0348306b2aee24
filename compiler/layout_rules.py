"""Shape rules for ops that move, split, join or drop dimensions without computing.

``permute``, ``transpose`` (and ``swapaxes``, ``swapdims``), ``movedim`` (and
``moveaxis``), ``unflatten`` and ``nn.Unflatten``, ``select``, ``split``, ``chunk``,
``squeeze``, ``unsqueeze`` and ``reshape``: each output dimension is an input
dimension, a size the spec writes, or a quotient of the two, so each keeps its
symbolic size (a block's ``in_channels`` stays ``in_channels`` after a permute). The
batch dimension is followed where it moves. A rule raises ShapeError for inputs the
op cannot take and Fallback for any argument form it does not read (a value that is
not an int, an op on the batch dimension, a list of the wrong length): torch then
runs the op on the meta device and says what is wrong in its own words.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from .shape_rules import Fallback, ShapeCall, ShapeError
from .values import BATCH, TensorValue, TupleValue, Value

__all__ = [
    "SQUEEZE_ALL",
    "chunk",
    "movedim",
    "permute",
    "reshape",
    "select",
    "split",
    "squeeze",
    "transpose",
    "unflatten",
    "unsqueeze",
]


class _SqueezeAll:
    """squeeze's ``dim`` when none is written (torch refuses an explicit None)."""

    def __repr__(self) -> str:
        return "SQUEEZE_ALL"


SQUEEZE_ALL = _SqueezeAll()


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Fallback  # not a dim or size: torch says what it takes
    return value


def _ints(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise Fallback
    return [_int(v) for v in value]


def _tensor(call: ShapeCall) -> TensorValue:
    x = call.only_tensor()
    if x.rank == 0:
        raise Fallback  # a 0-d tensor takes dims -1 and 0: left to torch
    return x


def _dim(call: ShapeCall, x: TensorValue, arg: str, value: Any, extra: int = 0) -> int:
    """``value`` as a dim of ``x`` in 0..rank-1 (+ ``extra``, for unsqueeze)."""
    dim = _int(value)
    rank = x.rank + extra
    if not -rank <= dim < rank:
        raise ShapeError(
            f"{call.op} {arg}={dim} is out of range for its input {x.render()}: "
            f"a dim must be in {-rank}..{rank - 1}",
            at=arg,
        )
    return dim % rank


def _item_syms(sym: ast.expr | None, n: int) -> list[ast.expr | None]:
    """The symbolic sizes of a list argument's items (None where unknown)."""
    if isinstance(sym, (ast.List, ast.Tuple)) and len(sym.elts) == n:
        return list(sym.elts)
    return [None] * n


def _product(syms: list[ast.expr | None]) -> ast.expr | None:
    if any(s is None for s in syms):
        return None
    if not syms:
        return ast.Constant(1)
    out = syms[0]
    for s in syms[1:]:
        out = ast.BinOp(out, ast.Mult(), s)  # type: ignore[arg-type]
    return out


def _quotient(top: ast.expr | None, bottom: ast.expr | None) -> ast.expr | None:
    if top is None or bottom is None:
        return None
    if isinstance(bottom, ast.Constant) and bottom.value == 1:
        return top
    return ast.BinOp(top, ast.FloorDiv(), bottom)


def _reorder(x: TensorValue, order: list[int]) -> TensorValue:
    """Output dim k is input dim ``order[k]``."""
    batch = None if x.batch_dim is None else order.index(x.batch_dim)
    return x.with_shape(
        [x.shape[k] for k in order], [x.sym[k] for k in order], batch_dim=batch
    )


def _not_batch(x: TensorValue, dim: int) -> None:
    if dim == x.batch_dim:
        raise Fallback  # its size is not known at compile time


def permute(call: ShapeCall) -> Value:
    x = _tensor(call)
    dims = _ints(call.arg("dims"))
    if len(dims) != x.rank:
        raise Fallback  # torch's message names both lengths
    order = [_dim(call, x, "dims", d) for d in dims]
    if len(set(order)) != len(order):
        raise ShapeError(f"{call.op} dims {dims} name a dimension twice", at="dims")
    return _reorder(x, order)


def transpose(call: ShapeCall, first: str, second: str) -> Value:
    """transpose (dim0, dim1), swapaxes (axis0, axis1), swapdims (dim0, dim1)."""
    x = _tensor(call)
    a = _dim(call, x, first, call.arg(first))
    b = _dim(call, x, second, call.arg(second))
    order = list(range(x.rank))
    order[a], order[b] = b, a
    return _reorder(x, order)


def movedim(call: ShapeCall) -> Value:
    x = _tensor(call)
    source, destination = call.arg("source"), call.arg("destination")
    if isinstance(source, int) != isinstance(destination, int):
        raise Fallback  # an int and a list: torch takes two of a kind
    sources = [source] if isinstance(source, int) else source
    destinations = [destination] if isinstance(destination, int) else destination
    src = [_dim(call, x, "source", d) for d in _ints(sources)]
    dst = [_dim(call, x, "destination", d) for d in _ints(destinations)]
    if len(src) != len(dst):
        raise ShapeError(
            f"{call.op} moves {len(src)} dims from source but {len(dst)} to "
            "destination: they need as many",
            at="destination",
        )
    for name, dims in (("source", src), ("destination", dst)):
        if len(set(dims)) != len(dims):
            raise ShapeError(f"{call.op} {name} names a dimension twice", at=name)
    order: list[int | None] = [None] * x.rank
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(k for k in range(x.rank) if k not in src)
    filled = [next(rest) if k is None else k for k in order]
    return _reorder(x, filled)


def unflatten(call: ShapeCall, sizes_arg: str) -> Value:
    """unflatten (dim, sizes) and nn.Unflatten (dim, unflattened_size)."""
    x = _tensor(call)
    d = _dim(call, x, "dim", call.arg("dim"))
    _not_batch(x, d)
    sizes = _ints(call.arg(sizes_arg))
    if not sizes or any(s < -1 for s in sizes):
        raise Fallback
    syms = _item_syms(call.sym(sizes_arg), len(sizes))
    size = x.shape[d]
    known = [s for s in sizes if s != -1]
    if len(known) < len(sizes) - 1:
        raise ShapeError(
            f"{call.op} {sizes_arg} {sizes} has more than one -1: only one size can "
            "be inferred",
            at=sizes_arg,
        )
    product = math.prod(known)
    fits = product != 0 and size % product == 0 if -1 in sizes else product == size
    if not fits:
        raise ShapeError(
            f"{call.op} {sizes_arg} {sizes} does not multiply to {size}, the size of "
            f"dim {d} of its input {x.render()}",
            at=sizes_arg,
        )
    if -1 in sizes:
        j = sizes.index(-1)
        sizes[j] = size // product
        others = [s for k, s in enumerate(syms) if k != j]
        syms[j] = _quotient(x.sym[d], _product(others))
    batch = x.batch_dim
    if batch is not None and batch > d:
        batch += len(sizes) - 1
    return x.with_shape(
        (*x.shape[:d], *sizes, *x.shape[d + 1 :]),
        (*x.sym[:d], *syms, *x.sym[d + 1 :]),
        batch_dim=batch,
    )


def select(call: ShapeCall) -> Value:
    x = _tensor(call)
    d = _dim(call, x, "dim", call.arg("dim"))
    _not_batch(x, d)
    index = _int(call.arg("index"))
    size = x.shape[d]
    if not -size <= index < size:
        raise ShapeError(
            f"{call.op} index={index} is out of range for dim {d} of its input "
            f"{x.render()}, of size {size}",
            at="index",
        )
    return _drop(x, [d])


def _drop(x: TensorValue, dims: list[int]) -> TensorValue:
    keep = [k for k in range(x.rank) if k not in dims]
    batch = None if x.batch_dim is None else keep.index(x.batch_dim)
    return x.with_shape(
        [x.shape[k] for k in keep], [x.sym[k] for k in keep], batch_dim=batch
    )


def _pieces(x: TensorValue, d: int, sizes: list[int], syms: list) -> TupleValue:
    items: list[Value] = []
    for n, sym in zip(sizes, syms):
        shape, out_sym = list(x.shape), list(x.sym)
        shape[d], out_sym[d] = n, sym
        items.append(x.with_shape(shape, out_sym))
    return TupleValue(tuple(items))


def split(call: ShapeCall) -> Value:
    x = _tensor(call)
    d = _dim(call, x, "dim", call.arg("dim"))
    _not_batch(x, d)
    arg = "split_size_or_sections"
    given = call.arg(arg)
    size = x.shape[d]
    if isinstance(given, (list, tuple)):
        sizes = _ints(given)
        if any(s < 0 for s in sizes):
            raise Fallback
        if sum(sizes) != size:
            raise ShapeError(
                f"{call.op} sections {sizes} add up to {sum(sizes)}, but dim {d} of "
                f"its input {x.render()} is {size}",
                at=arg,
            )
        return _pieces(x, d, sizes, _item_syms(call.sym(arg), len(sizes)))
    step = _int(given)
    if step < 1 or size == 0:
        raise Fallback
    full, rest = divmod(size, step)
    sizes = [step] * full + ([rest] if rest else [])
    step_sym, size_sym = call.sym(arg), x.sym[d]
    rest_sym = None
    if rest and step_sym is not None and size_sym is not None:
        rest_sym = ast.BinOp(size_sym, ast.Mod(), step_sym)
    syms = [step_sym] * full + ([rest_sym] if rest else [])
    return _pieces(x, d, sizes, syms)


def chunk(call: ShapeCall) -> Value:
    x = _tensor(call)
    d = _dim(call, x, "dim", call.arg("dim"))
    _not_batch(x, d)
    chunks = _int(call.arg("chunks"))
    size = x.shape[d]
    if chunks < 1 or size == 0:
        raise Fallback
    step = -(-size // chunks)
    n = -(-size // step)
    sizes = [step] * (n - 1) + [size - step * (n - 1)]
    sym = None
    if size % chunks == 0:
        sym = _quotient(x.sym[d], call.sym("chunks"))
    return _pieces(x, d, sizes, [sym] * n)


def squeeze(call: ShapeCall) -> Value:
    x = _tensor(call)
    given = call.arg("dim", SQUEEZE_ALL)
    if given is SQUEEZE_ALL:
        # As on the meta device: the batch dimension is kept (its size is BATCH).
        dims = [k for k, n in enumerate(x.shape) if n == 1 and k != x.batch_dim]
    else:
        listed = given if isinstance(given, (list, tuple)) else [given]
        dims = [_dim(call, x, "dim", d) for d in _ints(listed)]
        if x.batch_dim in dims or len(set(dims)) != len(dims):
            raise Fallback  # a batch of 1 would be squeezed when it runs; a dim twice
        dims = [k for k in dims if x.shape[k] == 1]
    return _drop(x, dims)


def unsqueeze(call: ShapeCall) -> Value:
    x = _tensor(call)
    d = _dim(call, x, "dim", call.arg("dim"), extra=1)
    batch = x.batch_dim
    if batch is not None and batch >= d:
        batch += 1
    return x.with_shape(
        (*x.shape[:d], 1, *x.shape[d:]),
        (*x.sym[:d], ast.Constant(1), *x.sym[d:]),
        batch_dim=batch,
    )


def reshape(call: ShapeCall) -> Value:
    """The batch must be the one -1 (``[-1, 64]``); any other form runs on meta."""
    x = _tensor(call)
    sizes = _ints(call.arg("shape"))
    if sizes.count(-1) != 1 or any(s < 1 for s in sizes if s != -1):
        raise Fallback
    j = sizes.index(-1)
    syms = _item_syms(call.sym("shape"), len(sizes))
    product = math.prod(s for s in sizes if s != -1)
    total = math.prod(x.shape)
    if x.batch_dim is not None:
        if total != BATCH * product:
            raise Fallback  # the -1 is not the batch alone: torch decides
        sizes[j], syms[j] = BATCH, x.sym[x.batch_dim]
        return x.with_shape(sizes, syms, batch_dim=j)
    if total % product:
        raise Fallback
    sizes[j] = total // product
    others = [s for k, s in enumerate(syms) if k != j]
    syms[j] = _quotient(_product(list(x.sym)), _product(others))
    return x.with_shape(sizes, syms)
