"""Sharded checkpoints of FSDP runs, written with torch.distributed.checkpoint (DCP).

A sharded checkpoint is a directory::

    last.dcp/
        .metadata           DCP's index: every tensor's global shape and its shards
        __<rank>_0.distcp   each rank's shards of the model and optimizer tensors
        meta.pt             everything else a .pt checkpoint holds (position, random
                            states, scheduler, the optimizer's hyperparameters)

Only tensors go through DCP, whose loader would unpickle anything else; the rest
is ``meta.pt``, read with ``torch.load(weights_only=True)`` like any checkpoint.
DCP's index, ``.metadata``, is a pickle: nnspec reads it with an unpickler that
admits only the classes of DCP's metadata (and torch's sizes, dtypes and layouts,
and paths), never ``pickle.load``; a planted one that names anything else is a
one-line error and runs nothing. Its shard file names must be plain names inside
the checkpoint directory.
Every rank writes its shards into ``.last.dcp.partial/``; rank 0 adds ``meta.pt``
and puts the directory in place, so a kill leaves the old checkpoint or the new
one. On several nodes the run directory must be on a filesystem they all share.

``consolidate`` reads a sharded checkpoint in one process, without a process
group, and writes the one-file checkpoint that a run of one process (or DDP)
resumes from and that ``torch.load`` reads.
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..spec.text import first_line
from .checkpoint import (
    UnreadableCheckpointError,
    load_checkpoint,
    partial_directory,
    replace_directory,
    save_checkpoint,
)
from .errors import TrainError

__all__ = [
    "META_FILE",
    "consolidate",
    "load_sharded",
    "read_index",
    "read_meta",
    "save_sharded",
]

META_FILE = "meta.pt"
_MODEL, _OPTIMIZER = "model.", "optimizer."
# Keys of meta.pt that only sharded checkpoints have.
_PARAM_NAMES, _OPTIMIZER_EXTRA, _PARAM_GROUPS = (
    "param_names",
    "optimizer_extra",
    "param_groups",
)


# What a DCP .metadata file may name: the classes of its index and the torch values
# they hold (found by unpickling the .metadata files this torch writes).
_DCP_METADATA = "torch.distributed.checkpoint.metadata"
_ALLOWED_GLOBALS = {
    (_DCP_METADATA, "Metadata"),
    (_DCP_METADATA, "MetadataIndex"),
    (_DCP_METADATA, "StorageMeta"),
    (_DCP_METADATA, "ChunkStorageMetadata"),
    (_DCP_METADATA, "TensorProperties"),
    (_DCP_METADATA, "TensorStorageMetadata"),
    (_DCP_METADATA, "BytesStorageMetadata"),
    (_DCP_METADATA, "_MEM_FORMAT_ENCODING"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # a layout by its name
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata and nothing else: any other global is refused before
    it is looked up, so nothing a file names can run."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"it refers to {module}.{name}, which DCP metadata never holds"
        )


def read_index(path: Path) -> Any:
    """DCP's index of the sharded checkpoint ``path`` (its ``.metadata``), read with
    the restricted unpickler; TrainError for anything else."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

    file = path / ".metadata"
    if file.is_symlink() or not file.is_file():
        raise UnreadableCheckpointError(
            f"cannot read sharded checkpoint {path}: it has no {file.name} file"
        )
    try:
        with open(file, "rb") as f:
            index = _MetadataUnpickler(f).load()
    except Exception as exc:  # a damaged or planted pickle raises many kinds
        raise UnreadableCheckpointError(
            f"cannot read sharded checkpoint {path}: {file} is not DCP metadata "
            f"({first_line(exc)})"
        ) from None
    if not isinstance(index, Metadata) or not isinstance(
        index.state_dict_metadata, dict
    ):
        raise UnreadableCheckpointError(
            f"cannot read sharded checkpoint {path}: {file} is not DCP metadata "
            f"(it holds a {type(index).__name__})"
        )
    for info in (index.storage_data or {}).values():
        name = getattr(info, "relative_path", None)
        if (
            not isinstance(info, _StorageInfo)
            or not isinstance(name, str)
            or name in ("", ".", "..")
            or "/" in name
            or "\\" in name
            or "\0" in name
        ):
            raise UnreadableCheckpointError(
                f"cannot read sharded checkpoint {path}: {file} names a shard "
                f"outside the checkpoint directory ({name!r})"
            )
    if getattr(index, "storage_meta", None) is None:
        index.storage_meta = StorageMeta()
    return index


def _reader(path: Path) -> Any:
    """DCP's FileSystemReader, reading its index with the restricted unpickler."""
    from torch.distributed.checkpoint import FileSystemReader

    class Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            index = read_index(path)
            index.storage_meta.load_id = self.load_id
            return index

    return Reader(os.fspath(path))


def _options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Optimizer state keyed by parameter name: "state.<name>.exp_avg", ...
    return StateDictOptions(flatten_optimizer_state_dict=True)


def _tensors(
    model_state: dict[str, Any], optimizer_state: dict[str, Any]
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors to write with DCP, and the optimizer's other values."""
    tensors = {_MODEL + k: v for k, v in model_state.items() if isinstance(v, Tensor)}
    extra = {}
    for key, value in optimizer_state.items():
        if isinstance(value, Tensor):
            tensors[_OPTIMIZER + key] = value
        else:
            extra[key] = value
    return tensors, extra


def save_sharded(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    path: Path,
    *,
    main: bool,
    barrier: Callable[[], None],
) -> None:
    """Write a sharded checkpoint; every rank calls it (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer, options=_options())
    tensors, extra = _tensors(model_state, optimizer_state)
    partial = partial_directory(path)
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    barrier()
    dcp.save(tensors, storage_writer=dcp.FileSystemWriter(partial))
    if main:
        names = {id(p): name for name, p in model.named_parameters()}
        meta = {
            **state,
            "model": None,
            "optimizer": None,
            _PARAM_NAMES: [
                names[id(p)] for g in optimizer.param_groups for p in g["params"]
            ],
            _PARAM_GROUPS: optimizer.state_dict()["param_groups"],
            _OPTIMIZER_EXTRA: extra,
        }
        save_checkpoint(meta, partial / META_FILE)
        replace_directory(partial, path)


def read_meta(path: Path) -> dict[str, Any]:
    """A sharded checkpoint's meta.pt, with ``model_shapes`` from DCP's index (for
    the check that the checkpoint fits the model)."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    if not (path / META_FILE).is_file():
        raise UnreadableCheckpointError(
            f"{path} is not a sharded checkpoint of nnspec (it has no {META_FILE})"
        )
    meta = load_checkpoint(path / META_FILE)
    index = read_index(path)
    meta["model_shapes"] = {
        key[len(_MODEL) :]: list(item.size)
        for key, item in index.state_dict_metadata.items()
        if key.startswith(_MODEL) and isinstance(item, TensorStorageMetadata)
    }
    return meta


def load_sharded(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> None:
    """Load a sharded checkpoint into the sharded model and its optimizer (every
    rank calls it; each reads its shards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    # The current state gives the keys and shards to fill in (and initialises the
    # optimizer's state, which the checkpoint then overwrites).
    model_state, optimizer_state = get_state_dict(model, optimizer, options=_options())
    tensors, _ = _tensors(model_state, optimizer_state)
    try:
        dcp.load(tensors, storage_reader=_reader(path))
    except Exception as exc:  # DCP raises several kinds for missing or odd shards
        raise TrainError(f"cannot load sharded checkpoint {path}: {exc}") from exc
    loaded_model = {k: tensors.get(_MODEL + k, v) for k, v in model_state.items()}
    loaded_optimizer: dict[str, Any] = dict(meta[_OPTIMIZER_EXTRA])
    for key, value in optimizer_state.items():
        if isinstance(value, Tensor):
            loaded_optimizer[key] = tensors[_OPTIMIZER + key]
    set_state_dict(
        model,
        optimizer,
        model_state_dict=loaded_model,
        optim_state_dict=loaded_optimizer,
        options=_options(),
    )


def consolidate(path: Path, out: Path) -> dict[str, Any]:
    """Turn the sharded checkpoint ``path`` into the one-file checkpoint ``out``
    (in one process, without a process group); returns what it wrote."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = read_meta(path)
    reader = _reader(path)
    items = {
        key: item
        for key, item in read_index(path).state_dict_metadata.items()
        if isinstance(item, TensorStorageMetadata)
    }
    # The tensors are allocated before they are read: no more than the shards hold.
    needed = sum(
        item.size.numel() * torch.empty(0, dtype=item.properties.dtype).element_size()
        for item in items.values()
    )
    held = sum(f.stat().st_size for f in path.glob("*.distcp") if f.is_file())
    if needed > held:
        raise TrainError(
            f"cannot read sharded checkpoint {path}: its index describes {needed:,} "
            f"bytes of tensors, its shards hold {held:,}"
        )
    tensors = {
        key: torch.empty(item.size, dtype=item.properties.dtype)
        for key, item in items.items()
    }
    with warnings.catch_warnings():  # that no process group is there is the point
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(tensors, storage_reader=reader, no_dist=True)

    # Optimizer state by parameter name -> by index, as optimizer.state_dict() has it.
    index = {name: i for i, name in enumerate(meta.pop(_PARAM_NAMES))}
    flat = {
        **meta.pop(_OPTIMIZER_EXTRA),
        **{
            k[len(_OPTIMIZER) :]: v
            for k, v in tensors.items()
            if k.startswith(_OPTIMIZER)
        },
    }
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if key.startswith("state."):
            name, _, field = key[len("state.") :].rpartition(".")
            per_param.setdefault(index[name], {})[field] = value
    groups = meta.pop(_PARAM_GROUPS)
    del meta["model_shapes"]
    state = {
        **meta,
        "model": {
            k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)
        },
        "optimizer": {"state": dict(sorted(per_param.items())), "param_groups": groups},
    }
    save_checkpoint(state, out)
    return state
