"""A model summary as a text table.

The table reads a summary's parts (``TableSource``), not the summary class itself,
so that ``ModelSummary.render`` can use it without the two modules importing each
other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from ..compiler.values import Value
from .formats import format_bytes, format_count
from .kinds import NodeKind
from .records import NodeSummary, OutputSummary, Totals, render_value

__all__ = ["TableSource", "render_table"]


class TableSource(Protocol):
    """What the table shows of a summary (``ModelSummary`` has all of it)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def inputs(self) -> Sequence[tuple[str, Value]]: ...
    @property
    def outputs(self) -> Sequence[OutputSummary]: ...
    @property
    def rows(self) -> Sequence[NodeSummary]: ...
    @property
    def ties(self) -> Sequence[tuple[str, str]]: ...
    @property
    def totals(self) -> Totals: ...
    @property
    def call(self) -> str: ...


_HEADERS = ("name", "op", "output", "params", "trains", "FLOPs")


def _table_rows(
    rows: Sequence[NodeSummary], level: int, depth: int | None
) -> Iterator[tuple[str, ...]]:
    for row in rows:
        op = row.op
        if row.kind is NodeKind.REPEAT:
            op = f"{op} x{len(row.children)}"
        elif row.kind is NodeKind.USE:
            op = f"{op} (shares {row.module})"
        trains = {"trainable": "yes", "frozen": "frozen", "partly frozen": "partly"}
        yield (
            "  " * level + row.node,
            op,
            row.shape,
            f"{row.params:,}" if row.kind is not NodeKind.USE else "-",
            trains.get(row.trainable or "", "-"),
            format_count(row.flops) if row.traced else "?",
        )
        if row.children and (depth is None or level < depth):
            yield from _table_rows(row.children, level + 1, depth)


def render_table(summary: TableSource, depth: int | None = None) -> str:
    """The table; ``depth`` limits how deep blocks open (0: the top level only)."""
    body = list(_table_rows(summary.rows, 0, depth))
    widths = [max(len(h), *(len(r[k]) for r in body)) for k, h in enumerate(_HEADERS)]
    right = {3, 5}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(widths[k]) if k in right else c.ljust(widths[k])
            for k, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(_HEADERS))
    out = [f"{summary.name} ({summary.path})"]
    if summary.call and summary.call != f"{summary.name}()":
        out.append(f"  built  {summary.call}")
    out += [f"  input  {name}: {value.render()}" for name, value in summary.inputs]
    out += [f"  output {o.key}: {render_value(o.value)}" for o in summary.outputs]
    out += ["", line(_HEADERS), rule, *(line(r) for r in body), rule]
    t = summary.totals
    frozen = f", {t.frozen_params:,} frozen" if t.frozen_params else ""
    out.append(
        f"parameters         {t.params:,} ({t.trainable_params:,} trainable{frozen})"
    )
    for path, source in summary.ties:
        out.append(f"tied               {path} = {source} (counted once)")
    memory = ", ".join(f"{format_bytes(n)} {d}" for d, n in t.param_bytes.items())
    out.append(f"parameter memory   {memory or 'none'}")
    if t.buffer_bytes:
        buffers = ", ".join(f"{format_bytes(n)} {d}" for d, n in t.buffer_bytes.items())
        out.append(f"buffer memory      {buffers}")
    out.append(
        f"activation memory  {format_bytes(t.activation_bytes)} per sample "
        "(saved for backward, training mode)"
    )
    if t.flops_forward_backward is not None:
        both = format_count(t.flops_forward_backward)
    else:
        both = f"unknown ({t.backward_problem})"
    out.append(
        f"FLOPs per sample   forward {format_count(t.flops_forward)}, "
        f"forward+backward {both}"
    )
    return "\n".join(out)
