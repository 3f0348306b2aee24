"""The rows and totals a summary is made of, and how their values are written."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..compiler.values import BATCH, TensorValue, TupleValue, Value
from .kinds import NodeKind

__all__ = [
    "NodeSummary",
    "OutputSummary",
    "Totals",
    "dims_of",
    "render_value",
    "runtime_value",
]


@dataclass
class NodeSummary:
    """One node of the model, or of a block inside it.

    ``kind`` is one of ``NodeKind.MODULE`` (a torch module), ``BLOCK`` (an instance
    of a spec block; its nodes are ``children``), ``REPEAT`` (the copies of a
    repeated node, named ``0``, ``1``, ...), ``FUNCTION`` (a tensor function) and
    ``USE`` (a call of an earlier module: a shared layer, whose parameters are
    counted at the original).
    """

    name: str  # dotted path from the model: 'up1.conv.conv2d'
    node: str  # name in its own graph: 'conv2d'
    op: str
    kind: NodeKind
    line: int
    value: Value | None
    inputs: list[str]  # references in its graph's namespace ('down3', 'lstm.0')
    input_keys: list[str] = field(default_factory=list)  # names, for in: {key: ref}
    module: str | None = None  # path of the module called (the shared one for a use)
    params: int = 0
    trainable: str | None = None  # 'trainable', 'frozen', 'partly frozen'; None: none
    flops: int = 0  # forward FLOPs per sample
    children: list[NodeSummary] = field(default_factory=list)
    graph_inputs: list[str] = field(default_factory=list)  # of a block or repeat
    graph_outputs: list[str] = field(default_factory=list)
    returns_tuple: bool = False  # a block whose outputs are a list
    traced: bool = True  # False: not seen in the forward pass; shape from the compiler

    def __post_init__(self) -> None:
        self.kind = NodeKind(self.kind)  # the plain string is accepted too

    @property
    def shape(self) -> str:
        """The output shape(s), '[B,64,32,32]'-style."""
        return render_value(self.value)

    def walk(self) -> Iterator[NodeSummary]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "node": self.node,
            "op": self.op,
            "kind": self.kind.value,
            "line": self.line,
            "shape": self.shape,
            "dims": dims_of(self.value),
            "params": self.params,
            "trainable": self.trainable,
            "flops": self.flops,
            "inputs": dict(zip(self.input_keys, self.inputs))
            if self.input_keys
            else self.inputs,
        }
        if self.kind is NodeKind.USE:
            data["shares"] = self.module
        if self.children:
            data["children"] = [c.to_dict() for c in self.children]
        return data


@dataclass
class OutputSummary:
    """One output of the model: its key (the reference for a single or tuple output)."""

    key: str
    ref: str
    value: Value | None


@dataclass
class Totals:
    """Whole-model numbers. FLOPs and activation memory are per sample."""

    params: int
    trainable_params: int
    param_bytes: dict[str, int]  # dtype name -> bytes
    buffer_bytes: dict[str, int]
    activation_bytes: int  # saved for backward, per sample, training mode
    flops_forward: int
    flops_forward_backward: int | None  # None when backward cannot run on meta
    backward_problem: str | None = None

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "param_bytes": self.param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "activation_bytes_per_sample": self.activation_bytes,
            "flops_forward_per_sample": self.flops_forward,
            "flops_forward_backward_per_sample": self.flops_forward_backward,
            "backward_problem": self.backward_problem,
        }


def render_value(value: Value | None) -> str:
    return value.render() if value is not None else "None"


def dims_of(value: Value | None) -> Any:
    """A value's sizes for JSON: None at the batch dimension, nested for tuples."""
    if isinstance(value, TensorValue):
        return [None if k == value.batch_dim else n for k, n in enumerate(value.shape)]
    if isinstance(value, TupleValue):
        return [dims_of(v) for v in value.items]
    return None


def runtime_value(output: Any, like: Value | None) -> Value | None:
    """The shape that ran, with the batch dimension where the compiler found it."""
    if isinstance(output, torch.Tensor):
        shape = tuple(output.shape)
        if isinstance(like, TensorValue) and like.rank == len(shape):
            batch = like.batch_dim
        else:
            batch = next((k for k, n in enumerate(shape) if n == BATCH), None)
        return TensorValue.make(shape, output.dtype, batch_dim=batch)
    if isinstance(output, (tuple, list)):
        items = like.items if isinstance(like, TupleValue) else ()
        return TupleValue(
            tuple(
                runtime_value(o, items[k] if k < len(items) else None)
                for k, o in enumerate(output)
            )
        )
    return like
