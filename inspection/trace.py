"""The forward pass of a summary, followed call by call.

Module calls are seen through forward hooks, tensor-function calls through a
``TorchFunctionMode``; each call made by a generated class is matched with the
statement of its class that made it (a ``Call`` of the IR), which gives its row the
spec name, op and line. Calls inside a torch module are not spec nodes: their FLOPs
count towards the module that makes them.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from ..compiler.ir import Call, ClassIR, ModuleDef, Ref
from ..compiler.pipeline import CompiledModel
from .kinds import NodeKind, call_kind, called_module, calls_module, module_kind
from .records import NodeSummary, runtime_value

__all__ = ["REPEAT_INPUT", "Tracer"]

#: The input of a repeat's first copy, in a repeat's own namespace.
REPEAT_INPUT = "input"


@dataclass
class _Frame:
    """A module call in progress. ``row`` is None for calls inside a torch module."""

    row: NodeSummary | None
    cls: ClassIR | None = None  # a generated class: its statements, in order
    repeat: ModuleDef | None = None  # a repeat: its copies, in order
    index: int = 0
    start: int = 0
    loop_size: int = 0  # a repeat called in a loop (an nn.ModuleList): its copies
    instance: nn.Module | None = None  # the generated class's module being run
    #: Statements left out (``when:``) -> the reference each passes through.
    aliases: dict[str, str] = field(default_factory=dict)

    def skip_absent(self) -> None:
        """Step over the conditional statements (``when:``) this instance leaves
        out: a module attribute that is None, a condition attribute that is false."""
        if self.cls is None or self.instance is None:
            return
        calls = self.cls.calls
        while self.index < len(calls) and not _runs(calls[self.index], self.instance):
            call = calls[self.index]
            self.aliases[call.node] = self.aliased(_ref_names(call))[0]
            self.index += 1

    def aliased(self, refs: list[str]) -> list[str]:
        """References with the statements left out replaced by what they pass."""
        out = []
        for ref in refs:
            name, dot, rest = ref.partition(".")
            target = self.aliases.get(name)
            out.append(ref if target is None else target + dot + rest)
        return out


def _runs(call: Call, instance: nn.Module) -> bool:
    test = call.condition
    if test is None:
        return True
    if isinstance(test, ast.Compare) and isinstance(test.left, ast.Attribute):
        return getattr(instance, test.left.attr, None) is not None
    if isinstance(test, ast.Attribute):
        return bool(getattr(instance, test.attr, False))
    return True


class Tracer(TorchFunctionMode):
    """Matches each call made while the model runs with the IR statement that made it.

    Enter it (with ``counter``) around the forward pass, call ``finish`` after it and
    ``remove`` in any case; the rows are the children of ``root``."""

    def __init__(
        self, compiled: CompiledModel, model: nn.Module, counter: FlopCounterMode
    ) -> None:
        super().__init__()
        self.classes = {c.name: c for c in [compiled.model, *compiled.blocks]}
        self.paths = {id(m): path for path, m in model.named_modules()}
        self.by_path = dict(model.named_modules())
        self.counter = counter
        self.root = NodeSummary(
            compiled.name, "", compiled.name, NodeKind.MODEL, 0, None, []
        )
        self.stack: list[_Frame] = [
            _Frame(self.root, cls=compiled.model, instance=model)
        ]
        self.handles: list[Any] = []
        for module in model.modules():
            if module is not model:
                self.handles.append(module.register_forward_pre_hook(self.before))
                self.handles.append(module.register_forward_hook(self.after))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def finish(self) -> None:
        """Rows for the model's statements after its last module call."""
        self.untraced_functions(self.stack[0], to_end=True)

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
            looped = self.looped_repeat(top, module)
            if looped is not None:  # its ModuleList is not called: open its row here
                assert top.row is not None
                row, mdef = self.module_row(top, looped)
                top.index += 1
                top.row.children.append(row)
                frame = _Frame(
                    row, repeat=mdef, start=self.flops(), loop_size=len(looped)
                )
                self.stack.append(frame)
                top = frame
        if top.cls is not None:
            row, mdef = self.module_row(top, module)
        else:
            assert top.repeat is not None
            row, mdef = self.copy_row(top, module)
        assert top.row is not None
        top.index += 1
        top.row.children.append(row)
        self.stack.append(
            _Frame(
                row,
                cls=self.classes[mdef.block]
                if row.kind is NodeKind.BLOCK and mdef.block
                else None,
                repeat=mdef if row.kind is NodeKind.REPEAT else None,
                start=self.flops(),
                instance=module,
            )
        )

    def after(self, module: nn.Module, args: Any, output: Any) -> None:
        frame = self.stack.pop()
        if frame.row is None:
            return
        if frame.cls is not None:
            self.untraced_functions(frame, to_end=True)
            frame.row.graph_outputs = frame.aliased(frame.row.graph_outputs)
        frame.row.flops = self.flops() - frame.start
        frame.row.value = runtime_value(output, frame.row.value)
        top = self.stack[-1]
        if top.loop_size and top.index == top.loop_size and top.row is not None:
            self.stack.pop()  # the loop's last copy returned: so has the loop
            top.row.flops = self.flops() - top.start
            top.row.value = runtime_value(output, top.row.value)

    def looped_repeat(self, frame: _Frame, module: nn.Module) -> nn.ModuleList | None:
        """The ModuleList of the frame's next statement, when that is a repeat called
        in a loop and ``module`` its first copy."""
        assert frame.cls is not None
        calls = frame.cls.calls
        if frame.index >= len(calls) or not calls[frame.index].loop:
            return None
        parent = self.by_path.get(self.paths.get(id(module), "").rpartition(".")[0])
        return parent if isinstance(parent, nn.ModuleList) else None

    def module_row(
        self, frame: _Frame, module: nn.Module
    ) -> tuple[NodeSummary, ModuleDef]:
        assert frame.cls is not None and frame.row is not None
        frame.skip_absent()
        calls = frame.cls.calls
        call = calls[frame.index] if frame.index < len(calls) else None
        mdef = called_module(frame.cls, call) if call is not None else None
        if call is None or mdef is None:
            raise RuntimeError(
                f"{frame.cls.name}.forward called {type(module).__name__} where "
                f"its compiled graph has {call.callee if call else 'nothing'}"
            )
        kind = call_kind(frame.cls, call)
        row = self.new_row(frame.row, call.node, call.op, kind, call.line, module)
        row.value = call.value
        row.inputs = frame.aliased(_ref_names(call))
        row.input_keys = list(call.inputs) if isinstance(call.inputs, dict) else []
        if kind is NodeKind.USE:
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
        # A block class's repeat may build more copies than the use it was
        # read from; the copies after the first are all built alike.
        children = frame.repeat.children
        mdef = children[min(k, len(children) - 1)]
        # A seq's children are keyed by name or position; a repeat's by position.
        key = mdef.name if frame.repeat.seq and k < len(children) else str(k)
        previous = children[k - 1].name if frame.repeat.seq else str(k - 1)
        kind = module_kind(mdef)
        row = self.new_row(frame.row, key, mdef.op.name, kind, mdef.line, module)
        row.value = frame.row.value
        row.inputs = [REPEAT_INPUT] if k == 0 else [previous]
        self.add_graph(row, mdef)
        return row, mdef

    def new_row(
        self,
        parent: NodeSummary,
        node: str,
        op: str,
        kind: NodeKind,
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
        if row.kind is NodeKind.BLOCK and mdef.block is not None:
            cls = self.classes[mdef.block]
            row.graph_inputs = list(cls.inputs)
            row.graph_outputs = [str(r) for r in cls.outputs.refs]
            row.returns_tuple = cls.outputs.kind == "tuple"
        elif row.kind is NodeKind.REPEAT:
            row.graph_inputs = [REPEAT_INPUT]
            last = mdef.children[-1].name if mdef.seq else str(len(mdef.children) - 1)
            row.graph_outputs = [last]

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
        row.inputs = top.aliased(row.inputs)
        top.index += 1
        top.row.children.append(row)
        start = self.flops()
        self.stack.append(_Frame(row))
        try:
            result = func(*args, **kwargs)
        finally:
            self.stack.pop()
        row.flops = self.flops() - start
        row.value = runtime_value(result, row.value)
        return result

    @staticmethod
    def expected_function(frame: _Frame, func: Callable[..., Any]) -> Call | None:
        """The statement this function call is, if it is the frame's next one."""
        if frame.row is None or frame.cls is None:
            return None
        frame.skip_absent()
        calls = frame.cls.calls
        if frame.index >= len(calls):
            return None
        call = calls[frame.index]
        if calls_module(call):
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
            NodeKind.FUNCTION,
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
            frame.skip_absent()
            if frame.index >= len(calls):
                break
            call = calls[frame.index]
            if calls_module(call):
                if to_end:
                    raise RuntimeError(
                        f"{frame.cls.name}.forward returned before calling {call.callee}"
                    )
                return
            row = self.function_row(frame.row, call)
            row.inputs = frame.aliased(row.inputs)
            row.traced = False
            frame.row.children.append(row)
            frame.index += 1


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
