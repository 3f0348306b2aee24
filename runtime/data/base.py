"""What every source reader shares: the run's inputs and targets, errors at the
spec's keys, and file paths relative to the spec."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path
from typing import Any

import torch

from ...spec.errors import SpecError
from ...spec.model import example_shape
from ..losses import CLASS_INDEX_LOSSES
from ..settings import Settings
from .samples import LabelRange

__all__ = ["ReaderBase", "first_line", "size_text", "suggest"]


class ReaderBase:
    def __init__(self, settings: Settings, allow_imports: frozenset[str]) -> None:
        self.settings = settings
        self.allow_imports = allow_imports
        spec = settings.spec.compiled.spec
        self.inputs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for name, decl in spec.inputs.items():
            shape, dtype = (
                (decl, "float32")
                if isinstance(decl, list)
                else (
                    decl.shape,
                    decl.dtype,
                )
            )
            self.inputs[name] = (tuple(example_shape(shape)), getattr(torch, dtype))
        self.targets: dict[str, Any] = {}
        for term in settings.losses:
            for name in term.data_names:
                self.targets.setdefault(name, term)

    @property
    def names(self) -> list[str]:
        return list(self.inputs) + [t for t in self.targets if t not in self.inputs]

    def error(self, path: tuple, message: str, *, key: bool = False) -> SpecError:
        """A SpecError at ``train.<path>`` (at the key itself, for ``key``)."""
        return self.settings.error(path, message, key=key)

    def sample_shape(self, output: str) -> list[int]:
        """An output's shape without the batch dimension (unknown sizes as 1)."""
        value = self.settings.outputs[output]
        shape = list(value.shape)
        del shape[value.batch_dim or 0]
        return [d if isinstance(d, int) else 1 for d in shape]

    def label_ranges(self) -> list[LabelRange]:
        """The class-index targets of the losses, with their output's classes."""
        found = []
        for term in self.settings.losses:
            if term.op not in CLASS_INDEX_LOSSES or term.target is None:
                continue
            value = self.settings.outputs[term.output]
            shape = list(value.shape)
            del shape[value.batch_dim or 0]
            if not shape or not isinstance(shape[0], int):
                continue
            ignore = getattr(term.module, "ignore_index", None)
            found.append(
                LabelRange(term.target, term.output, term.op, shape[0], ignore)
            )
        return found

    def resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        spec_path = self.settings.spec.path
        if not path.is_absolute() and not spec_path.startswith("<"):
            path = Path(spec_path).resolve().parent / path
        return path

    def regular_file(self, file: Path, path: tuple) -> None:
        """A data file must be a regular file: a FIFO would hang, a device never end."""
        try:
            mode = os.stat(file).st_mode
        except FileNotFoundError:
            raise self.error(path, f"no such data file: {file}") from None
        except (OSError, ValueError) as exc:
            raise self.error(path, f"cannot read {file}: {first_line(exc)}") from None
        if not stat.S_ISREG(mode):
            raise self.error(path, f"{file} is not a regular file")

    def missing(self, name: str, present: list[str]) -> str:
        role = "input" if name in self.inputs else "loss target"
        return (
            f"the data has no array {name!r} (the {role}); "
            f"it has: {', '.join(map(str, present)) or 'nothing'}"
        )

    def is_class_index(self, target: str) -> bool:
        """Whether a loss takes ``target`` as class indices."""
        term = self.targets.get(target)
        return term is not None and term.op in CLASS_INDEX_LOSSES


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def size_text(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def suggest(name: str, choices: list[str]) -> str:
    """'; did you mean 'x'?' for a close choice, else ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def item_names(
    reader: ReaderBase, given: list[str] | None, path: tuple, count: int | None = None
) -> tuple[str, ...]:
    """The names of a tuple item's positions: ``items:`` as given (each an input or
    a loss target, each of them once), else the inputs then the targets. ``count``:
    the positions the source's items have."""
    names = reader.names
    if given is None:
        if count is not None and len(names) != count:
            roles = f"{len(reader.inputs)} input(s) and {len(reader.targets)} target(s)"
            raise reader.error(
                path,
                f"this source gives {count} arrays a sample, but the run needs "
                f"{len(names)} ({roles}: {', '.join(names)}): name them with items:",
            )
        return tuple(names)
    where = (*path, "items")
    for k, name in enumerate(given):
        if name not in names:
            raise reader.error(
                (*where, k),
                f"items: {name!r} is not an input or a loss target "
                f"(those are {', '.join(names)}){suggest(name, names)}",
            )
        if given.index(name) != k:
            raise reader.error((*where, k), f"items: {name!r} is named twice")
    absent = [name for name in names if name not in given]
    if absent:
        raise reader.error(where, f"items does not name {absent[0]!r}")
    if count is not None and len(given) != count:
        raise reader.error(
            where,
            f"this source gives {count} arrays a sample; items names {len(given)}",
        )
    return tuple(given)
