"""The locals of ``forward``, named as a person names them.

One variable carries the chain of values (``x = self.conv(x)``, ``x = self.bn(x)``);
a value gets a name of its own (its node's) only where the chain cannot carry it: it is
used more than once (a skip connection), it is an output, or the chain still holds a
value needed later (the shortcut of a residual block). The last statement's value, when
``forward`` only returns it, is returned directly: ``return self.fc(x)``.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from .graph import Call, ClassIR, Ref
from .names import Namespace, local_name
from .values import TupleValue

__all__ = ["ForwardLocals", "forward_locals", "localised", "runtime_reads"]

#: The attributes of a value that forward reads at run time (``x.shape[0]``, the
#: device of ``like:``).
_READ = ("shape", "device")


def _read_names(tree: ast.AST) -> list[ast.Name]:
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr in _READ
        and isinstance(n.value, ast.Name)
        and n.value.id != "self"
    ]


def runtime_reads(call: Call) -> list[str]:
    """The values whose sizes or device a call's arguments read at run time."""
    trees = [*call.args, *(v for _, v in call.kwargs)]
    return [n.id for tree in trees for n in _read_names(tree)]


def localised(tree: ast.expr, names: dict[str, str]) -> ast.expr:
    """An argument with the values it reads at run time named by their locals."""
    if not _read_names(tree):
        return tree

    class Rename(ast.NodeTransformer):
        def visit_Attribute(self, n: ast.Attribute) -> ast.AST:
            if (
                n.attr in _READ
                and isinstance(n.value, ast.Name)
                and n.value.id != "self"
            ):
                value = ast.Name(names.get(n.value.id, n.value.id), ast.Load())
                return ast.Attribute(value, n.attr, ast.Load())
            return self.generic_visit(n)

    return Rename().visit(copy.deepcopy(tree))


@dataclass
class ForwardLocals:
    """The local each value of ``forward`` is held in, and the returned call."""

    names: dict[str, str]  # input or node name -> local name
    returned: int | None  # index of the call written into ``return``, if one is
    loops: dict[str, str]  # a looped repeat's node -> its loop variable


def _refs(call: Call) -> list[Ref]:
    return list(call.inputs.values() if isinstance(call.inputs, dict) else call.inputs)


def _first(call: Call) -> str | None:
    refs = _refs(call)
    return refs[0].name if refs else None


def _node_locals(inputs: list[str], nodes: list[str]) -> dict[str, str]:
    """Each node's own local: its name where that is a fine local (most are), else
    the ``local_name`` of it, made unique among the graph's locals."""
    own = {n: n for n in nodes if local_name(n, set(inputs)) == n}
    names = Namespace(set(inputs) | set(own))
    for node in nodes:
        if node not in own:
            own[node] = names.fresh(local_name(node, set(inputs)))
    return own


def forward_locals(cls: ClassIR) -> ForwardLocals:
    calls = cls.calls
    uses: dict[str, list[int]] = {}  # value -> the statements that read it
    for j, call in enumerate(calls):
        for ref in _refs(call):
            uses.setdefault(ref.name, []).append(j)
        for name in runtime_reads(call):
            uses.setdefault(name, []).append(j)
    outputs = {ref.name for ref in cls.outputs.refs}
    for ref in cls.outputs.refs:
        uses.setdefault(ref.name, []).append(len(calls))

    returned = None  # a tuple is returned as names: ``return a, b``
    if (
        calls
        and cls.outputs.kind != "tuple"
        and uses.get(calls[-1].node) == [len(calls)]
        and not calls[-1].loop  # a loop is a statement: ``return x`` follows it
        and calls[-1].condition is None
    ):
        returned = len(calls) - 1

    own = _node_locals(cls.inputs, [c.node for c in calls])
    taken = set(cls.inputs) | set(own.values())
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
        names[call.node] = own[call.node]
        if j == returned:
            continue
        first_ref = _refs(call)[0] if call.loop else None
        if (
            first_ref is not None
            and not first_ref.index
            and uses.get(first_ref.name) == [j]
            and (holder is None or holder == first_ref.name)
            and uses.get(call.node, [-1])[0] > j
            and not isinstance(call.value, TupleValue)
        ):  # ``for layer in self.layer: h = layer(h, mask)``: the input's local
            names[call.node] = names[first_ref.name]
            holder = call.node
            continue
        readers = uses.get(call.node, [])
        # A loop that ends forward leaves its value in the chain: ``return x``.
        last_loop = call.loop and j == len(calls) - 1 and cls.outputs.kind == "single"
        single = (
            len(set(readers)) == 1
            and (call.node not in outputs or last_loop)
            and not isinstance(call.value, TupleValue)  # ``lstm[0]`` reads better
        )
        free = holder is None or max(uses.get(holder, [-1])) <= j
        if not (single and free):
            continue
        continues = holder is not None and _first(call) == holder
        # A value off the chain starts it again only as the next statement's main
        # input (``x = torch.cat([features, extra])``), not as one of two branches.
        starts = readers[0] == j + 1 < len(calls) and _first(calls[j + 1]) == call.node
        if continues or starts:
            names[call.node] = chain
            holder = call.node
    # ``for layer in self.layer:`` names the copy by the node, when its own local is
    # free (the chain holds its value), else ``layer_module``.
    held = set(names.values()) | set(cls.inputs)
    loops = {}
    for call in calls:
        if call.loop:
            mine = own[call.node]
            free = mine not in held
            loops[call.node] = Namespace(held).fresh(mine if free else f"{mine}_module")
            held.add(loops[call.node])
    return ForwardLocals(names, returned, loops)
