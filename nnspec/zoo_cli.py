"""``nnspec zoo``: the specs of the model zoo, with their parameter counts.

Each row is computed, not stored: the spec is compiled with its default params and
built on the meta device (nothing is allocated), so a spec dropped into the zoo's
folder is listed at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from .api import load
from .compiler.values import TensorValue
from .spec.files import ZOO_PREFIX

__all__ = ["ZooEntry", "entries", "entry", "register_zoo", "zoo_table"]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo spec as ``nnspec zoo`` lists it."""

    name: str
    #: The generated model class.
    model: str
    parameters: int
    #: Input name -> {"shape": per-sample sizes, "dtype": "float32"}.
    inputs: dict[str, dict[str, Any]]
    #: The params in effect when none are given: their defaults.
    params: dict[str, Any]
    #: The implementation the spec matches (its ``# reference:`` comment), or None.
    reference: str | None

    def input_text(self) -> str:
        parts = []
        for name, value in self.inputs.items():
            shape = "[" + ", ".join(str(n) for n in value["shape"]) + "]"
            dtype = "" if value["dtype"] == "float32" else f" {value['dtype']}"
            parts.append(f"{name} {shape}{dtype}")
        return ", ".join(parts)

    def params_text(self) -> str:
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in self.params.items())


def entry(name: str) -> ZooEntry:
    """The zoo spec ``name``, compiled with its defaults and built on meta."""
    from .zoo import reference

    spec = load(ZOO_PREFIX + name)
    model = spec.build(device="meta")
    inputs: dict[str, dict[str, Any]] = {}
    compiled = spec.compiled.model
    for input_name, value in zip(compiled.inputs, compiled.input_values):
        assert isinstance(value, TensorValue)  # inputs are tensors
        shape = [n for k, n in enumerate(value.shape) if k != value.batch_dim]
        dtype = str(value.dtype).removeprefix("torch.")
        inputs[input_name] = {"shape": shape, "dtype": dtype}
    return ZooEntry(
        name=name,
        model=spec.name,
        parameters=sum(p.numel() for p in model.parameters()),
        inputs=inputs,
        params=spec.params,
        reference=reference(name),
    )


def entries() -> list[ZooEntry]:
    """Every zoo spec, by name."""
    from .zoo import names

    return [entry(name) for name in names()]


def zoo_table(rows: list[ZooEntry]) -> str:
    """The rows as aligned columns of text, a header first."""
    table = [("name", "model", "parameters", "inputs", "params", "reference")]
    table += [
        (
            e.name,
            e.model,
            f"{e.parameters:,}",
            e.input_text(),
            e.params_text(),
            e.reference or "-",
        )
        for e in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = []
    for row in table:
        cells = [
            cell.rjust(w) if i == 2 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def zoo_command(args: argparse.Namespace) -> int:
    rows = entries()
    if args.json:
        json.dump([asdict(e) for e in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(zoo_table(rows))
        print(
            "\nload one with nnspec.load('zoo:NAME', params={...}), compile it with "
            "compile-model zoo:NAME, or derive from it with extends: zoo:NAME"
        )
    return 0


def register_zoo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the list as JSON (name, model, parameters, inputs, params, "
        "reference)",
    )
    parser.set_defaults(handler=zoo_command)
