"""Sources of named arrays: .npz archives, torch.save files, synthetic samples."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ..losses import BINARY_LOSSES, CLASS_INDEX_LOSSES
from .base import ReaderBase, first_line, size_text

__all__ = ["SYNTHETIC_MAX_BYTES", "SYNTHETIC_SAMPLES", "FileSources"]

#: Samples of the plain ``source: synthetic``.
SYNTHETIC_SAMPLES = 1024
#: The most memory synthetic samples may take; checked before they are made.
SYNTHETIC_MAX_BYTES = 1 << 31


class FileSources(ReaderBase):
    def npz(self, file: Path, path: tuple) -> dict[str, Tensor]:
        """The arrays the run needs, read without pickle: an object array is an
        error, as are strings, dates and other arrays that are not numbers."""
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency
            raise self.error(path, "reading .npz files needs numpy") from None
        self.regular_file(file, path)
        try:
            with open(file, "rb") as handle:
                magic = handle.read(4)
        except OSError as exc:
            raise self.error(path, f"cannot read {file}: {first_line(exc)}") from None
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise self.error(
                path, f"{file} is not an .npz archive (a zip of named .npy arrays)"
            )
        arrays: dict[str, Tensor] = {}
        try:
            archive = np.load(file, allow_pickle=False)
        except Exception as exc:  # zipfile, zlib and numpy raise many kinds
            raise self.error(
                path, f"cannot read {file} as .npz: {first_line(exc)}"
            ) from None
        with archive:
            present = list(archive.files)
            for name in self.names:
                if name not in present:
                    message = self.missing(name, present)
                    if {"format", "shape"} <= set(present):
                        message += (
                            f"; {file} looks like a scipy sparse matrix "
                            "(save_npz): store dense arrays with numpy.savez"
                        )
                    raise self.error(path, message)
                try:
                    array = archive[name]
                except ValueError as exc:
                    reason = first_line(exc)
                    if "allow_pickle" in reason:
                        reason = (
                            "it holds Python objects, which are read only with "
                            "pickle, and nnspec never unpickles data"
                        )
                    raise self.error(
                        path, f"cannot read array {name!r} of {file}: {reason}"
                    ) from None
                except Exception as exc:  # a damaged member: zlib, zipfile, EOF
                    raise self.error(
                        path,
                        f"cannot read array {name!r} of {file}: {first_line(exc)}",
                    ) from None
                if array.dtype.kind not in "biuf":
                    raise self.error(
                        path,
                        f"array {name!r} of {file} holds "
                        f"{_KINDS.get(array.dtype.kind, 'values')} (dtype "
                        f"{array.dtype}); data arrays hold numbers or booleans",
                    )
                if array.ndim == 0:
                    raise self.error(
                        path,
                        f"array {name!r} of {file} is a single value; samples go "
                        "along its first axis",
                    )
                arrays[name] = torch.from_numpy(np.ascontiguousarray(array))
        return arrays

    def pt(self, file: Path, path: tuple) -> dict[str, Tensor]:
        self.regular_file(file, path)
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise self.error(path, f"no such data file: {file}") from None
        except Exception as exc:  # torch raises many kinds for a bad file
            raise self.error(
                path, f"cannot read {file} with torch.load: {exc}"
            ) from None
        if not isinstance(loaded, Mapping) or not all(
            isinstance(v, Tensor) for v in loaded.values()
        ):
            raise self.error(
                path, f"{file} must hold a mapping of name -> tensor for training"
            )
        return dict(loaded)

    def synthetic(self, n: int, path: tuple) -> dict[str, Tensor]:
        """Random inputs as declared, and targets each loss can take; at most
        SYNTHETIC_MAX_BYTES of them, checked before any is made."""
        self.check_synthetic_size(n, path)
        generator = torch.Generator().manual_seed(self.settings.train.seed)
        arrays: dict[str, Tensor] = {}
        for name, (shape, dtype) in self.inputs.items():
            arrays[name] = _random((n, *shape), dtype, generator)
        for name, term in self.targets.items():
            if name in arrays:
                continue
            value = self.settings.outputs[term.output]
            out_shape = list(value.shape)
            batch_dim = value.batch_dim or 0
            del out_shape[batch_dim]
            if term.op in CLASS_INDEX_LOSSES:
                classes = out_shape[0] if out_shape else 2
                arrays[name] = torch.randint(
                    0, classes, (n, *out_shape[1:]), generator=generator
                )
            elif term.op in BINARY_LOSSES:
                arrays[name] = torch.randint(
                    0, 2, (n, *out_shape), generator=generator
                ).float()
            else:
                arrays[name] = torch.randn((n, *out_shape), generator=generator).to(
                    value.dtype
                )
        return arrays

    def check_synthetic_size(self, n: int, path: tuple) -> None:
        per_sample = 0
        for shape, dtype in self.inputs.values():
            # Floating inputs are drawn as float32 first, then cast.
            size = max(dtype.itemsize, 4) if dtype.is_floating_point else 8
            per_sample += math.prod(shape) * size
        for name, term in self.targets.items():
            if name not in self.inputs:  # at most 8 bytes an element
                dims = self.sample_shape(term.output)
                if term.op in CLASS_INDEX_LOSSES:
                    dims = dims[1:]  # a class index where the output has classes
                per_sample += math.prod(dims) * 8
        total = n * per_sample
        if total > SYNTHETIC_MAX_BYTES:
            most = SYNTHETIC_MAX_BYTES // max(per_sample, 1)
            raise self.error(
                path,
                f"{n} synthetic samples take {size_text(total)}, over the limit of "
                f"{size_text(SYNTHETIC_MAX_BYTES)} for synthetic data: ask for at most "
                f"{most} samples",
            )


_KINDS = {
    "U": "strings",
    "S": "bytes",
    "O": "Python objects",
    "M": "dates",
    "m": "time spans",
    "V": "records",
    "c": "complex numbers",
}


def _random(
    shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator
) -> Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, 2, shape, generator=generator).to(dtype)
