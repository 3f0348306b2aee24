"""A run's model over a file of inputs (``nnspec predict RUN INPUT -o OUT``, whose
command line is nnspec/run_cli.py).

INPUT is an .npz or .pt file (a mapping of name -> tensor, read without pickle)
holding the model's inputs, samples along the first axis. OUT gets one array per
output (.npz, or .pt for torch.save), computed in batches on the run's device and
at its precision, in eval mode. An existing OUT is replaced only with
``--overwrite``; the file is written whole or not at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .device import autocast
from .errors import RunError
from .evaluate import LoadedRun

__all__ = ["SUFFIXES", "predict", "read_inputs", "write_outputs"]

SUFFIXES = (".npz", ".pt")


def read_inputs(run: LoadedRun, file: Path) -> dict[str, Tensor]:
    """The model's inputs from ``file``, checked against their declared shapes and
    cast to their dtypes; a problem is a one-line RunError."""
    raw = _read(file)
    declared = run.settings.spec.compiled.spec.inputs
    inputs: dict[str, Tensor] = {}
    for name, decl in declared.items():
        shape, dtype = (
            (decl, "float32") if isinstance(decl, list) else (decl.shape, decl.dtype)
        )
        if name not in raw:
            have = ", ".join(map(str, raw)) or "nothing"
            raise RunError(
                f"{file} has no array {name!r} (an input of the model); it has: {have}"
            )
        try:
            array = torch.as_tensor(raw[name])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise RunError(
                f"{file}: array {name!r} is not a tensor of numbers: {exc}"
            ) from None
        sample = list(array.shape[1:])
        fixed = len(sample) == len(shape) and all(
            not isinstance(d, int) or d == got for d, got in zip(shape, sample)
        )
        if array.dim() == 0 or not fixed:
            raise RunError(
                f"{file}: array {name!r} holds samples of shape "
                f"{sample if array.dim() else 'a scalar'}; "
                f"input {name!r} is declared {list(shape)}"
            )
        inputs[name] = array.to(getattr(torch, dtype))
    counts = {name: len(a) for name, a in inputs.items()}
    if len(set(counts.values())) > 1:
        sizes = ", ".join(f"{k}: {v}" for k, v in counts.items())
        raise RunError(
            f"{file}: the inputs hold different numbers of samples ({sizes})"
        )
    if not next(iter(counts.values()), 0):
        raise RunError(f"{file} holds no samples")
    return inputs


def _read(file: Path) -> dict[str, Any]:
    if file.suffix not in SUFFIXES:
        raise RunError(f"{file}: the inputs are an .npz or .pt file")
    if not file.is_file():
        raise RunError(
            f"{file}: no such file"
            if not file.exists()
            else f"{file} is not a regular file"
        )
    try:
        if file.suffix == ".npz":
            import numpy as np

            with np.load(file, allow_pickle=False) as loaded:
                found: Any = {
                    name: torch.from_numpy(loaded[name]) for name in loaded.files
                }
        else:
            found = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # numpy and torch raise many kinds for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunError(f"cannot read {file}: {first}") from None
    if not isinstance(found, dict):
        raise RunError(
            f"{file} must hold a mapping of name -> tensor, not {type(found).__name__}"
        )
    return found


@torch.no_grad()
def predict(
    run: LoadedRun, inputs: dict[str, Tensor], batch_size: int | None = None
) -> dict[str, Tensor]:
    """The outputs for every sample, on the CPU, batch after batch."""
    s = run.settings
    size = batch_size or s.train.data.batch_size
    n = len(next(iter(inputs.values())))
    dims = {name: (v.batch_dim or 0) for name, v in s.outputs.items()}
    parts: dict[str, list[Tensor]] = {}
    for begin in range(0, n, size):
        batch = {k: v[begin : begin + size].to(run.device) for k, v in inputs.items()}
        with autocast(run.device, s.train.precision):
            outputs = run.forward(batch)
        for name, value in outputs.items():
            if isinstance(value, Tensor):
                if value.is_floating_point() and value.dtype != torch.float64:
                    value = value.float()  # bfloat16 and float16 as float32
                parts.setdefault(name, []).append(value.cpu())
    return {
        name: torch.cat(chunks, dim=dims.get(name, 0)) for name, chunks in parts.items()
    }


def write_outputs(outputs: dict[str, Tensor], target: Path) -> None:
    """Write the outputs whole (a temporary file beside the target, then renamed)."""
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix
    )
    os.close(handle)
    try:
        if target.suffix == ".npz":
            import numpy as np

            arrays: dict[str, Any] = {k: v.numpy() for k, v in outputs.items()}
            np.savez(temporary, **arrays)
        else:
            torch.save(outputs, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
