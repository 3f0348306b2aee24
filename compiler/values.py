"""What flows along the graph's edges at compile time: tensors described by shape."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import torch

from .expressions import Val

__all__ = ["BATCH", "TensorValue", "TupleValue", "Value", "render_shape"]

#: The batch size used wherever a concrete batch is needed (meta execution).
#: A number unlikely to equal a real dimension, so the batch can be found again.
BATCH = 7


@dataclass(frozen=True)
class TensorValue:
    """A tensor: its concrete shape (the batch dimension holds BATCH), dtype, and
    per-dimension symbolic sizes in the enclosing class's terms."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    sym: tuple[ast.expr | None, ...]
    batch_dim: int | None = 0
    #: Per dimension, the name of a size known only at run time (an input's
    #: named dimension); empty where none is.
    dynamic: tuple[str | None, ...] = ()

    @staticmethod
    def make(
        shape: tuple[int, ...] | list[int],
        dtype: torch.dtype,
        sym: tuple[ast.expr | None, ...] | None = None,
        batch_dim: int | None = 0,
    ) -> TensorValue:
        shape = tuple(int(s) for s in shape)
        if sym is None:
            sym = tuple(None for _ in shape)
        return TensorValue(shape, dtype, tuple(sym), batch_dim)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def dim_val(self, k: int) -> Val | None:
        """Dimension k as an expression value; None for the batch dimension."""
        if k == self.batch_dim:
            return None
        sym = self.sym[k]
        return Val(self.shape[k], sym) if sym is not None else Val(self.shape[k], None)

    def dim_vals(self) -> list[Val | None]:
        return [self.dim_val(k) for k in range(self.rank)]

    def dim_sym(self, k: int) -> ast.expr | None:
        return self.sym[k]

    def with_shape(
        self,
        shape: tuple[int, ...] | list[int],
        sym: tuple[ast.expr | None, ...] | list[ast.expr | None] | None = None,
        dtype: torch.dtype | None = None,
        batch_dim: int | str | None = "same",
    ) -> TensorValue:
        return TensorValue.make(
            shape,
            dtype or self.dtype,
            tuple(sym) if sym is not None else None,
            self.batch_dim if batch_dim == "same" else batch_dim,  # type: ignore[arg-type]
        )

    def render(self) -> str:
        return render_shape(self.shape, self.batch_dim)

    def meta(self) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device="meta")


@dataclass(frozen=True)
class TupleValue:
    """A tuple of values, as returned by LSTM or chunk."""

    items: tuple[Value, ...]

    def render(self) -> str:
        return (
            "("
            + ", ".join("None" if v is None else v.render() for v in self.items)
            + ")"
        )


Value = TensorValue | TupleValue


def render_shape(shape: tuple[int, ...], batch_dim: int | None = 0) -> str:
    """'[B,64,32,32]'-style text, as in error messages."""
    return (
        "["
        + ",".join("B" if k == batch_dim else str(n) for k, n in enumerate(shape))
        + "]"
    )
