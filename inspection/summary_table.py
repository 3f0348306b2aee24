"""A model summary as a text table, and the number formats it uses."""

from __future__ import annotations

from collections.abc import Iterator

from .summary import ModelSummary, NodeSummary

__all__ = ["format_bytes", "format_count", "render_table"]


def format_count(n: float) -> str:
    """1303440 -> '1.30M'; small numbers as they are."""
    if n < 1000:
        return f"{n:g}"
    for unit in ("K", "M", "G", "T", "P"):
        n /= 1000
        if n < 1000:
            digits = 0 if n >= 100 else 1 if n >= 10 else 2
            return f"{n:.{digits}f}{unit}"
    return f"{n:.0f}P"


def format_bytes(n: float) -> str:
    """Binary units: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


_HEADERS = ("name", "op", "output", "params", "trains", "FLOPs")


def _table_rows(
    rows: list[NodeSummary], level: int, depth: int | None
) -> Iterator[tuple[str, ...]]:
    for row in rows:
        op = row.op
        if row.kind == "repeat":
            op = f"{op} x{len(row.children)}"
        elif row.kind == "use":
            op = f"{op} (shares {row.module})"
        trains = {"trainable": "yes", "frozen": "frozen", "partly frozen": "partly"}
        yield (
            "  " * level + row.node,
            op,
            row.shape,
            f"{row.params:,}" if row.kind != "use" else "-",
            trains.get(row.trainable or "", "-"),
            format_count(row.flops) if row.traced else "?",
        )
        if row.children and (depth is None or level < depth):
            yield from _table_rows(row.children, level + 1, depth)


def render_table(summary: ModelSummary, depth: int | None) -> str:
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
    out += [f"  input  {name}: {value.render()}" for name, value in summary.inputs]
    out += [
        f"  output {o.key}: {o.value.render() if o.value is not None else 'None'}"
        for o in summary.outputs
    ]
    out += ["", line(_HEADERS), rule, *(line(r) for r in body), rule]
    t = summary.totals
    frozen = f", {t.frozen_params:,} frozen" if t.frozen_params else ""
    out.append(
        f"parameters         {t.params:,} ({t.trainable_params:,} trainable{frozen})"
    )
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
