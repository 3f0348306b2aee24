"""A model's summary, from its compiled graph and one forward pass on the meta device.

Every number comes from running the generated model on tensors without data: output
shapes, parameter counts, FLOPs (``torch.utils.flop_counter.FlopCounterMode``, which
counts matrix multiplications and convolutions as 2 FLOPs per multiply-add), and the
activation memory, measured as the bytes of the tensors autograd saves for the
backward pass. Nothing is allocated, so a 10B-parameter spec summarises in seconds.

The forward pass is followed call by call: module calls through forward hooks,
tensor-function calls through a ``TorchFunctionMode``; each call made by a generated
class is matched with the statement of its class that made it (a ``Call`` of the IR),
which gives the row its spec name, op and line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from ..compiler.graph import Call, ClassIR, ModuleDef, Ref
from ..compiler.pipeline import CompiledModel
from ..compiler.values import BATCH, TensorValue, TupleValue, Value
from ..spec.errors import SpecError

__all__ = [
    "ModelSummary",
    "NodeSummary",
    "OutputSummary",
    "Totals",
    "summarize",
    "tensors_in",
]

#: The input of a repeat's first copy, in a repeat's own namespace.
REPEAT_INPUT = "input"


@dataclass
class NodeSummary:
    """One node of the model, or of a block inside it.

    ``kind`` is one of ``module`` (a torch module), ``block`` (an instance of a spec
    block; its nodes are ``children``), ``repeat`` (the copies of a repeated node,
    named ``0``, ``1``, ...), ``function`` (a tensor function) and ``use`` (a call of
    an earlier module: a shared layer, whose parameters are counted at the original).
    """

    name: str  # dotted path from the model: 'up1.conv.conv2d'
    node: str  # name in its own graph: 'conv2d'
    op: str
    kind: str
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

    @property
    def shape(self) -> str:
        """The output shape(s), '[B,64,32,32]'-style."""
        return self.value.render() if self.value is not None else "None"

    def walk(self) -> Iterator[NodeSummary]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "node": self.node,
            "op": self.op,
            "kind": self.kind,
            "line": self.line,
            "shape": self.shape,
            "dims": _dims(self.value),
            "params": self.params,
            "trainable": self.trainable,
            "flops": self.flops,
            "inputs": dict(zip(self.input_keys, self.inputs))
            if self.input_keys
            else self.inputs,
        }
        if self.kind == "use":
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
            "inputs": [
                {"name": n, "shape": v.render(), "dims": _dims(v)}
                for n, v in self.inputs
            ],
            "outputs": [
                {"key": o.key, "ref": o.ref, "shape": _render(o.value)}
                for o in self.outputs
            ],
            "rows": [row.to_dict() for row in self.rows],
            "totals": self.totals.to_dict(),
        }

    def render(self, depth: int | None = None) -> str:
        """The summary as a text table; ``depth`` limits how deep blocks open (0: top)."""
        from .summary_table import render_table

        return render_table(self, depth)

    def __str__(self) -> str:
        return self.render()


# -- the forward pass, followed ----------------------------------------------------


@dataclass
class _Frame:
    """A module call in progress. ``row`` is None for calls inside a torch module."""

    row: NodeSummary | None
    cls: ClassIR | None = None  # a generated class: its statements, in order
    repeat: ModuleDef | None = None  # a repeat: its copies, in order
    index: int = 0
    start: int = 0


class _Tracer(TorchFunctionMode):
    """Matches each call made while the model runs with the IR statement that made it."""

    def __init__(
        self, compiled: CompiledModel, model: nn.Module, counter: FlopCounterMode
    ) -> None:
        super().__init__()
        self.classes = {c.name: c for c in [compiled.model, *compiled.blocks]}
        self.paths = {id(m): path for path, m in model.named_modules()}
        self.counter = counter
        self.root = NodeSummary(compiled.name, "", compiled.name, "model", 0, None, [])
        self.stack: list[_Frame] = [_Frame(self.root, cls=compiled.model)]
        self.handles: list[Any] = []
        for module in model.modules():
            if module is not model:
                self.handles.append(module.register_forward_pre_hook(self.before))
                self.handles.append(module.register_forward_hook(self.after))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def flops(self) -> int:
        return int(self.counter.get_total_flops())

    def current(self) -> NodeSummary | None:
        """The innermost row being computed, for errors."""
        for frame in reversed(self.stack):
            if frame.row is not None:
                return frame.row
        return None

    # -- module calls ---------------------------------------------------------

    def before(self, module: nn.Module, args: Any) -> None:
        top = self.stack[-1]
        if top.row is None or (top.cls is None and top.repeat is None):
            self.stack.append(_Frame(None))  # inside a torch module: not a spec node
            return
        if top.cls is not None:
            self.untraced_functions(top)
            row, mdef = self.module_row(top, module)
        else:
            assert top.repeat is not None
            row, mdef = self.copy_row(top, module)
        top.index += 1
        top.row.children.append(row)
        self.stack.append(
            _Frame(
                row,
                cls=self.classes[mdef.block]
                if row.kind == "block" and mdef.block
                else None,
                repeat=mdef if row.kind == "repeat" else None,
                start=self.flops(),
            )
        )

    def after(self, module: nn.Module, args: Any, output: Any) -> None:
        frame = self.stack.pop()
        if frame.row is None:
            return
        if frame.cls is not None:
            self.untraced_functions(frame, to_end=True)
        frame.row.flops = self.flops() - frame.start
        frame.row.value = _runtime_value(output, frame.row.value)

    def module_row(
        self, frame: _Frame, module: nn.Module
    ) -> tuple[NodeSummary, ModuleDef]:
        assert frame.cls is not None and frame.row is not None
        calls = frame.cls.calls
        call = calls[frame.index] if frame.index < len(calls) else None
        if call is None or not call.callee.startswith("self."):
            raise RuntimeError(
                f"{frame.cls.name}.forward called {type(module).__name__} where "
                f"its compiled graph has {call.callee if call else 'nothing'}"
            )
        attr = call.callee.removeprefix("self.")
        mdef = next(m for m in frame.cls.modules if m.name == attr)
        if call.op.startswith("use "):
            kind = "use"
        elif mdef.block is not None:
            kind = "block"
        elif mdef.children:
            kind = "repeat"
        else:
            kind = "module"
        row = self.new_row(frame.row, call.node, call.op, kind, call.line, module)
        row.value = call.value
        row.inputs = _ref_names(call)
        row.input_keys = list(call.inputs) if isinstance(call.inputs, dict) else []
        if kind == "use":
            row.op = mdef.op.name
            row.params, row.trainable = 0, None
        else:
            self.add_graph(row, mdef)
        return row, mdef

    def copy_row(
        self, frame: _Frame, module: nn.Module
    ) -> tuple[NodeSummary, ModuleDef]:
        assert frame.repeat is not None and frame.row is not None
        k = frame.index
        mdef = frame.repeat.children[k]
        kind = "block" if mdef.block is not None else "module"
        row = self.new_row(frame.row, str(k), mdef.op.name, kind, mdef.line, module)
        row.value = frame.row.value
        row.inputs = [REPEAT_INPUT] if k == 0 else [str(k - 1)]
        self.add_graph(row, mdef)
        return row, mdef

    def new_row(
        self,
        parent: NodeSummary,
        node: str,
        op: str,
        kind: str,
        line: int,
        module: nn.Module,
    ) -> NodeSummary:
        name = f"{parent.name}.{node}" if parent is not self.root else node
        params = list(module.parameters())
        return NodeSummary(
            name=name,
            node=node,
            op=op,
            kind=kind,
            line=line,
            value=None,
            inputs=[],
            module=self.paths.get(id(module)),
            params=sum(p.numel() for p in params),
            trainable=_trainable(params),
        )

    def add_graph(self, row: NodeSummary, mdef: ModuleDef) -> None:
        """A block's or repeat's own inputs and outputs, for drawing it opened."""
        if row.kind == "block" and mdef.block is not None:
            cls = self.classes[mdef.block]
            row.graph_inputs = list(cls.inputs)
            row.graph_outputs = [str(r) for r in cls.outputs.refs]
            row.returns_tuple = cls.outputs.kind == "tuple"
        elif row.kind == "repeat":
            row.graph_inputs = [REPEAT_INPUT]
            row.graph_outputs = [str(len(mdef.children) - 1)]

    # -- function calls -------------------------------------------------------

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        top = self.stack[-1]
        call = self.expected_function(top, func)
        if call is None:
            return func(*args, **kwargs)
        assert top.row is not None
        row = self.function_row(top.row, call)
        top.index += 1
        top.row.children.append(row)
        start = self.flops()
        self.stack.append(_Frame(row))
        try:
            result = func(*args, **kwargs)
        finally:
            self.stack.pop()
        row.flops = self.flops() - start
        row.value = _runtime_value(result, row.value)
        return result

    @staticmethod
    def expected_function(frame: _Frame, func: Callable[..., Any]) -> Call | None:
        """The statement this function call is, if it is the frame's next one."""
        if frame.row is None or frame.cls is None:
            return None
        calls = frame.cls.calls
        if frame.index >= len(calls):
            return None
        call = calls[frame.index]
        if call.callee.startswith("self."):
            return None
        if call.callee.rsplit(".", 1)[-1] != getattr(func, "__name__", None):
            return None
        return call

    def function_row(self, parent: NodeSummary, call: Call) -> NodeSummary:
        name = f"{parent.name}.{call.node}" if parent is not self.root else call.node
        return NodeSummary(
            name,
            call.node,
            call.op,
            "function",
            call.line,
            call.value,
            _ref_names(call),
            list(call.inputs) if isinstance(call.inputs, dict) else [],
        )

    def untraced_functions(self, frame: _Frame, *, to_end: bool = False) -> None:
        """Rows for function statements the mode did not see (a function that does not
        dispatch through ``__torch_function__``): shapes from the compiler, no FLOPs."""
        assert frame.cls is not None and frame.row is not None
        calls = frame.cls.calls
        while frame.index < len(calls):
            call = calls[frame.index]
            if call.callee.startswith("self."):
                if to_end:
                    raise RuntimeError(
                        f"{frame.cls.name}.forward returned before calling {call.callee}"
                    )
                return
            row = self.function_row(frame.row, call)
            row.traced = False
            frame.row.children.append(row)
            frame.index += 1


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
    tracer = _Tracer(compiled, model, counter)
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
            tracer.untraced_functions(tracer.stack[0], to_end=True)
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
    )


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
        return None, _one_line(exc)
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
        f"{_one_line(exc)}",
        path=doc.path,
        line=line,
        column=column,
        source=doc.source,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first if len(first) < 300 else first[:300] + "..."


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


def _runtime_value(output: Any, like: Value | None) -> Value | None:
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
                _runtime_value(o, items[k] if k < len(items) else None)  # type: ignore[misc]
                for k, o in enumerate(output)
            )
        )
    return like


def _outputs(cls: ClassIR, output: Any) -> list[OutputSummary]:
    refs = cls.outputs.refs
    if cls.outputs.kind == "dict":
        assert isinstance(output, dict)
        return [
            OutputSummary(key, str(ref), _runtime_value(output[key], None))
            for key, ref in zip(cls.outputs.keys, refs)
        ]
    items = output if cls.outputs.kind == "tuple" else (output,)
    return [
        OutputSummary(str(ref), str(ref), _runtime_value(item, None))
        for ref, item in zip(refs, items)
    ]


def _ref_names(call: Call) -> list[str]:
    refs: list[Ref] = (
        list(call.inputs.values()) if isinstance(call.inputs, dict) else call.inputs
    )
    return [str(r) for r in refs]


def _trainable(params: Sequence[torch.Tensor]) -> str | None:
    if not params:
        return None
    trains = [p.requires_grad for p in params]
    if all(trains):
        return "trainable"
    return "frozen" if not any(trains) else "partly frozen"


def _bytes_by_dtype(tensors: Sequence[torch.Tensor]) -> dict[str, int]:
    found: dict[str, int] = {}
    for t in tensors:
        name = str(t.dtype).removeprefix("torch.")
        found[name] = found.get(name, 0) + t.numel() * t.element_size()
    return found


def _dims(value: Value | None) -> Any:
    if isinstance(value, TensorValue):
        return [None if k == value.batch_dim else n for k, n in enumerate(value.shape)]
    if isinstance(value, TupleValue):
        return [_dims(v) for v in value.items]
    return None


def _render(value: Value | None) -> str:
    return value.render() if value is not None else "None"
