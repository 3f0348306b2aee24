"""A model's summary, from its compiled graph and one forward pass on the meta device.

Every number comes from running the generated model on tensors without data: output
shapes, parameter counts, FLOPs (``torch.utils.flop_counter.FlopCounterMode``, which
counts matrix multiplications and convolutions as 2 FLOPs per multiply-add), and the
activation memory, measured as the bytes of the tensors autograd saves for the
backward pass. Nothing is allocated, so a 10B-parameter spec summarises in seconds.

The forward pass is followed call by call (``trace.Tracer``), which gives each row its
spec name, op and line; the rows are ``records.NodeSummary``, the table is
``summary_table``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..compiler.ir import ClassIR
from ..compiler.pipeline import CompiledModel
from ..compiler.pyformat import expr
from ..compiler.values import BATCH, TensorValue, Value
from ..spec.errors import SpecError
from ..spec.text import first_line
from .kinds import NodeKind
from .records import (
    NodeSummary,
    OutputSummary,
    Totals,
    dims_of,
    render_value,
    runtime_value,
)
from .summary_table import render_table
from .trace import Tracer

__all__ = [
    "ModelSummary",
    "NodeKind",
    "NodeSummary",
    "OutputSummary",
    "Totals",
    "constructor_call",
    "summarize",
    "tensors_in",
]


@dataclass
class ModelSummary:
    """What ``Spec.summary()`` returns: rows per node, and totals."""

    name: str
    path: str
    inputs: list[tuple[str, Value]]
    outputs: list[OutputSummary]
    outputs_kind: str  # 'single', 'tuple' or 'dict'
    rows: list[NodeSummary]
    totals: Totals
    #: Tied parameters: (dotted path, the path whose tensor it is).
    ties: list[tuple[str, str]] = field(default_factory=list)
    #: The constructor call the model was built by: ``UNet(classes=2, base=64)``.
    call: str = ""

    def walk(self) -> Iterator[NodeSummary]:
        """Every row, depth first, in forward order."""
        for row in self.rows:
            yield from row.walk()

    def __getitem__(self, name: str) -> NodeSummary:
        """The row of a node by its dotted name: ``summary["up1.conv"]``."""
        for row in self.walk():
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.path,
            "call": self.call,
            "inputs": [
                {"name": n, "shape": v.render(), "dims": dims_of(v)}
                for n, v in self.inputs
            ],
            "outputs": [
                {"key": o.key, "ref": o.ref, "shape": render_value(o.value)}
                for o in self.outputs
            ],
            "rows": [row.to_dict() for row in self.rows],
            "totals": self.totals.to_dict(),
            "ties": [{"param": p, "tied_to": t} for p, t in self.ties],
        }

    def render(self, depth: int | None = None) -> str:
        """The summary as a text table; ``depth`` limits how deep blocks open (0: top)."""
        return render_table(self, depth)

    def __str__(self) -> str:
        return self.render()


# -- running it ---------------------------------------------------------------------


def summarize(compiled: CompiledModel, model: nn.Module) -> ModelSummary:
    """The summary of ``model``, an instance of ``compiled``'s class built on the meta
    device (``Spec.build(device="meta")``). Raises SpecError at a node's line when the
    model cannot run on the meta device."""
    spec_inputs = compiled.model.input_values
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    inputs = [_meta_input(v, dtype) for v in spec_inputs]
    model.train()
    counter = FlopCounterMode(display=False)
    tracer = Tracer(compiled, model, counter)
    saved: dict[int, tuple[torch.Tensor, int]] = {}
    own = {_storage_key(t) for t in [*model.parameters(), *model.buffers()]}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in own:
            saved[key] = (tensor, tensor.untyped_storage().nbytes())
        return tensor

    try:
        with (
            counter,
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            tracer,
        ):
            output = model(*inputs)
            tracer.finish()
    except SpecError:
        raise
    except Exception as exc:
        raise _node_error(compiled, tracer.current(), exc) from None
    finally:
        tracer.remove()
    forward = int(counter.get_total_flops())
    backward, problem = _backward_flops(output)
    rows = tracer.root.children
    for row in (r for top in rows for r in top.walk()):
        row.flops = round(row.flops / BATCH)
    params = list({id(p): p for p in model.parameters()}.values())
    totals = Totals(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=_bytes_by_dtype(params),
        buffer_bytes=_bytes_by_dtype(list(model.buffers())),
        activation_bytes=round(sum(n for _, n in saved.values()) / BATCH),
        flops_forward=round(forward / BATCH),
        flops_forward_backward=(
            round((forward + backward) / BATCH) if backward is not None else None
        ),
        backward_problem=problem,
    )
    return ModelSummary(
        name=compiled.name,
        path=compiled.document.path,
        inputs=list(zip(compiled.model.inputs, spec_inputs)),
        outputs=_outputs(compiled.model, output),
        outputs_kind=compiled.model.outputs.kind,
        rows=rows,
        totals=totals,
        ties=list(compiled.model.ties),
        call=constructor_call(compiled.model),
    )


def constructor_call(cls: ClassIR) -> str:
    """``UNet(classes=2, base=64)``: the class called with its params' defaults."""
    args = ", ".join(
        f"{p.name}={expr(p.default)}" for p in cls.params if p.default is not None
    )
    return f"{cls.name}({args})"


def _meta_input(value: Value, dtype: torch.dtype | None) -> torch.Tensor:
    assert isinstance(value, TensorValue)
    tensor = value.meta()
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor


def _storage_key(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage()._cdata)


def _backward_flops(output: Any) -> tuple[int | None, str | None]:
    """FLOPs of the backward pass from the sum of the outputs; 0 when nothing trains."""
    leaves = [
        t
        for t in tensors_in(output)
        if t.requires_grad and (t.is_floating_point() or t.is_complex())
    ]
    if not leaves:
        return 0, None
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            torch.autograd.backward(leaves, [torch.ones_like(t) for t in leaves])
    except Exception as exc:
        return None, first_line(exc)
    return int(counter.get_total_flops()), None


def _node_error(
    compiled: CompiledModel, row: NodeSummary | None, exc: Exception
) -> SpecError:
    doc = compiled.document
    line = row.line if row is not None else 0
    column = 0
    lines = doc.source.splitlines()
    if 0 < line <= len(lines):
        text = lines[line - 1]
        column = len(text) - len(text.lstrip()) + 1
    what = f"node {row.name!r} ({row.op})" if row is not None else compiled.name
    return SpecError(
        f"{what} cannot run on the meta device, so it cannot be summarised: "
        f"{first_line(exc)}",
        path=doc.path,
        line=line,
        column=column,
        source=doc.source,
    )


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in a value: a tensor, or tuples, lists and dicts holding them."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def _outputs(cls: ClassIR, output: Any) -> list[OutputSummary]:
    refs = cls.outputs.refs
    if cls.outputs.kind == "dict":
        assert isinstance(output, dict)
        return [
            OutputSummary(key, str(ref), runtime_value(output[key], None))
            for key, ref in zip(cls.outputs.keys, refs)
        ]
    items = output if cls.outputs.kind == "tuple" else (output,)
    return [
        OutputSummary(str(ref), str(ref), runtime_value(item, None))
        for ref, item in zip(refs, items)
    ]


def _bytes_by_dtype(tensors: Sequence[torch.Tensor]) -> dict[str, int]:
    found: dict[str, int] = {}
    for t in tensors:
        name = str(t.dtype).removeprefix("torch.")
        found[name] = found.get(name, 0) + t.numel() * t.element_size()
    return found
