"""Shape rules for the recurrent layers: ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``.

Their output shapes are closed-form, and running them on the meta device costs a
step per time step (minutes for a sequence of 10**5), so the shapes pass never does
for the forms these rules read: one input, batched (3-D), integer sizes. Anything else
(an initial state given as a second input, an unbatched input, an input whose last
size is not ``input_size``) is a Fallback: torch says what is wrong on the meta
device, at once, before its time loop.
"""

from __future__ import annotations

import ast
from typing import Any

from .shape_rules import Fallback, ShapeCall
from .values import TensorValue, TupleValue, Value

__all__ = ["recurrent"]


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Fallback
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Fallback
    return value


def _scaled(sym: ast.expr | None, factor: int) -> ast.expr | None:
    """``factor * sym`` (a bidirectional layer's doubled size); None stays None."""
    if sym is None or factor == 1:
        return sym
    return ast.BinOp(ast.Constant(factor), ast.Mult(), sym)


def recurrent(call: ShapeCall) -> Value:
    """(output, h_n) for RNN and GRU, (output, (h_n, c_n)) for LSTM.

    output keeps the input's shape but for its last dimension, D * H_out (D = 2 when
    bidirectional; H_out = proj_size when an LSTM projects, else hidden_size); h_n is
    (D * num_layers, N, H_out) and c_n (D * num_layers, N, hidden_size), N being the
    input's batch dimension as torch reads it (dim 0 with batch_first, else dim 1).
    """
    if len(call.inputs) != 1:
        raise Fallback  # an initial state: torch checks its shape
    x = call.tensor(0)
    if x.rank != 3 or not x.dtype.is_floating_point:
        raise Fallback
    input_size = _int(call.arg("input_size"))
    hidden = _int(call.arg("hidden_size"))
    layers = _int(call.arg("num_layers", 1))
    proj = _int(call.arg("proj_size", 0)) if call.op == "LSTM" else 0
    batch_first = _flag(call.arg("batch_first", False))
    directions = 2 if _flag(call.arg("bidirectional", False)) else 1
    if x.shape[2] != input_size or hidden < 1 or layers < 1 or proj < 0:
        raise Fallback
    out, out_sym = (
        (proj, call.sym("proj_size")) if proj else (hidden, call.sym("hidden_size"))
    )
    output = x.with_shape(
        (x.shape[0], x.shape[1], directions * out),
        (x.sym[0], x.sym[1], _scaled(out_sym, directions)),
    )
    n = 0 if batch_first else 1
    states = directions * layers
    states_sym = _scaled(call.sym("num_layers"), directions)
    batch_dim = 1 if x.batch_dim == n else None

    def state(size: int, sym: ast.expr | None) -> TensorValue:
        return TensorValue.make(
            (states, x.shape[n], size), x.dtype, (states_sym, x.sym[n], sym), batch_dim
        )

    h_n = state(out, _scaled(out_sym, 1))
    if call.op != "LSTM":
        return TupleValue((output, h_n))
    return TupleValue(
        (output, TupleValue((h_n, state(hidden, call.sym("hidden_size")))))
    )
