"""Loading and saving weights: safetensors or torch files, with a report of what matched.

``Spec.build`` loads the weights a spec names with it; the runtime saves trained ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..spec.files import FileRefused, open_regular
from ..spec.text import first_line
from ..spec.version import __version__

__all__ = ["LoadReport", "WeightsError", "load_weights", "read_tensors", "save_weights"]

_SAFETENSORS = (".safetensors",)
# Checkpoint layouts whose model weights sit under one key.
_NESTED_KEYS = ("model", "state_dict", "model_state_dict")


class WeightsError(ValueError):
    """A weights file that cannot be read, or that does not fit the model."""


@dataclass
class LoadReport:
    """What loading weights into a module did."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the module, not in the file
    unexpected: list[str] = field(
        default_factory=list
    )  # in the file, not in the module
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )
    # (key, shape in the module, shape in the file)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(
                f"missing from the file ({len(self.missing)}): {', '.join(self.missing)}"
            )
        if self.unexpected:
            lines.append(
                f"not in the model ({len(self.unexpected)}): {', '.join(self.unexpected)}"
            )
        for key, want, have in self.mismatched:
            lines.append(
                f"shape mismatch for {key}: model {list(want)}, file {list(have)}"
            )
        return "; ".join(lines)


def read_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch file, read safely (no code runs)."""
    name = os.fspath(path)
    # Only a regular file (no device, FIFO or directory), opened once and read
    # through that descriptor: what is read is what was checked.
    try:
        fd = open_regular(name, "weights file")
    except FileRefused as exc:
        raise WeightsError(str(exc)) from None
    try:
        with os.fdopen(fd, "rb") as handle:
            if name.endswith(_SAFETENSORS):
                from safetensors.torch import load as load_bytes

                size = os.fstat(handle.fileno()).st_size
                blob = handle.read(size + 1)
                if len(blob) != size:
                    raise WeightsError(f"{name} changed size while it was read")
                data: object = load_bytes(blob)
            else:
                data = torch.load(handle, map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(
            f"cannot read weights from {name}: {first_line(exc, 200)}"
        ) from None
    if isinstance(data, Mapping):
        for key in _NESTED_KEYS:
            nested = data.get(key)
            if (
                isinstance(nested, Mapping)
                and nested
                and all(isinstance(v, torch.Tensor) for v in nested.values())
            ):
                data = nested
                break
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise WeightsError(f"{name} does not hold a mapping of names to tensors")
    return dict(data)


def load_weights(
    module: nn.Module,
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    prefix: str = "",
    strict: bool = True,
) -> LoadReport:
    """Copy matching tensors into ``module``'s parameters and buffers.

    With ``prefix``, only the file's keys under it are used, with it removed. With
    ``strict``, any missing, unexpected or mis-shaped key is a WeightsError and nothing
    is loaded; otherwise what matches is loaded and the report says the rest.
    """
    tensors = dict(source) if isinstance(source, Mapping) else read_tensors(source)
    if prefix:
        dotted = prefix if prefix.endswith(".") else f"{prefix}."
        tensors = {
            k[len(dotted) :]: v for k, v in tensors.items() if k.startswith(dotted)
        }
        if not tensors:
            raise WeightsError(f"no tensors under the prefix {prefix!r}")
    own = module.state_dict()
    report = LoadReport()
    usable: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(tensor.shape):
            report.mismatched.append((key, tuple(own[key].shape), tuple(tensor.shape)))
        else:
            usable[key] = tensor
    report.missing = [key for key in own if key not in tensors]
    if strict and not report.complete:
        raise WeightsError(f"the weights do not fit the model: {report}")
    module.load_state_dict(usable, strict=False)
    report.loaded = list(usable)
    return report


def save_weights(
    module: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a module's state (or a mapping of tensors) as .safetensors or a torch file,
    through a temporary file renamed into place.

    A .safetensors file carries ``metadata`` (text values) in its header, after
    ``format: pt`` and the nnspec version that wrote it; read it back with
    ``safetensors.safe_open(path, "pt").metadata()``."""
    target = Path(path)
    state = module.state_dict() if isinstance(module, nn.Module) else dict(module)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = target.with_name(f".{target.name}.tmp")
    if target.suffix in _SAFETENSORS:
        from safetensors.torch import save_file

        header = {"format": "pt", "nnspec_version": __version__, **(metadata or {})}
        save_file(state, str(tmp), metadata=header)
    else:
        torch.save(state, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target
