"""The locals of ``forward``, named as a person names them.

One variable carries the chain of values (``x = self.conv(x)``, ``x = self.bn(x)``);
a value gets a name of its own (its node's) only where the chain cannot carry it: it is
used more than once (a skip connection), it is an output, or the chain still holds a
value needed later (the shortcut of a residual block). The last statement's value, when
``forward`` only returns it, is returned directly: ``return self.fc(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import Call, ClassIR, Ref
from .names import Namespace
from .values import TupleValue

__all__ = ["ForwardLocals", "forward_locals"]


@dataclass
class ForwardLocals:
    """The local each value of ``forward`` is held in, and the returned call."""

    names: dict[str, str]  # input or node name -> local name
    returned: int | None  # index of the call written into ``return``, if one is


def _refs(call: Call) -> list[Ref]:
    return list(call.inputs.values() if isinstance(call.inputs, dict) else call.inputs)


def _first(call: Call) -> str | None:
    refs = _refs(call)
    return refs[0].name if refs else None


def forward_locals(cls: ClassIR) -> ForwardLocals:
    calls = cls.calls
    uses: dict[str, list[int]] = {}  # value -> the statements that read it
    for j, call in enumerate(calls):
        for ref in _refs(call):
            uses.setdefault(ref.name, []).append(j)
    outputs = {ref.name for ref in cls.outputs.refs}
    for ref in cls.outputs.refs:
        uses.setdefault(ref.name, []).append(len(calls))

    returned = None  # a tuple is returned as names: ``return a, b``
    if (
        calls
        and cls.outputs.kind != "tuple"
        and uses.get(calls[-1].node) == [len(calls)]
        and calls[-1].condition is None
    ):
        returned = len(calls) - 1

    taken = set(cls.inputs) | {c.node for c in calls}
    first = cls.inputs[0] if cls.inputs else None
    first_dies = first is not None and uses.get(first) == [0]
    if "x" not in taken or (first == "x" and first_dies):
        chain = "x"
    elif first_dies and first is not None:
        chain = first
    else:
        chain = Namespace(taken).fresh("h")

    names = {name: name for name in cls.inputs}
    holder = first if first == chain else None  # the value the chain holds now
    for j, call in enumerate(calls):
        names[call.node] = call.node
        if j == returned:
            continue
        readers = uses.get(call.node, [])
        single = (
            len(set(readers)) == 1
            and call.node not in outputs
            and not isinstance(call.value, TupleValue)  # ``lstm[0]`` reads better
        )
        free = holder is None or max(uses.get(holder, [-1])) <= j
        if not (single and free):
            continue
        continues = holder is not None and _first(call) == holder
        # A value off the chain starts it again only as the next statement's main
        # input (``x = torch.cat([features, extra])``), not as one of two branches.
        starts = readers[0] == j + 1 and _first(calls[j + 1]) == call.node
        if continues or starts:
            names[call.node] = chain
            holder = call.node
    return ForwardLocals(names, returned)
