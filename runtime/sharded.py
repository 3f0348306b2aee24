"""Sharded checkpoints of FSDP runs, written with torch.distributed.checkpoint (DCP).

A sharded checkpoint is a directory::

    last.dcp/
        .metadata           DCP's index: every tensor's global shape and its shards
        __<rank>_0.distcp   each rank's shards of the model and optimizer tensors
        meta.pt             everything else a .pt checkpoint holds (position, random
                            states, scheduler, the optimizer's hyperparameters)

Only tensors go through DCP, whose loader would unpickle anything else; the rest
is ``meta.pt``, read with ``torch.load(weights_only=True)`` like any checkpoint.
Every rank writes its shards into ``.last.dcp.partial/``; rank 0 adds ``meta.pt``
and puts the directory in place, so a kill leaves the old checkpoint or the new
one. On several nodes the run directory must be on a filesystem they all share.

``consolidate`` reads a sharded checkpoint in one process, without a process
group, and writes the one-file checkpoint that a run of one process (or DDP)
resumes from and that ``torch.load`` reads.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    load_checkpoint,
    partial_directory,
    replace_directory,
    save_checkpoint,
)
from .errors import TrainError

__all__ = ["META_FILE", "consolidate", "load_sharded", "read_meta", "save_sharded"]

META_FILE = "meta.pt"
_MODEL, _OPTIMIZER = "model.", "optimizer."
# Keys of meta.pt that only sharded checkpoints have.
_PARAM_NAMES, _OPTIMIZER_EXTRA, _PARAM_GROUPS = (
    "param_names",
    "optimizer_extra",
    "param_groups",
)


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
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    if not (path / META_FILE).is_file():
        raise TrainError(
            f"{path} is not a sharded checkpoint of nnspec (it has no {META_FILE})"
        )
    meta = load_checkpoint(path / META_FILE)
    try:
        index = FileSystemReader(os.fspath(path)).read_metadata()
    except Exception as exc:  # DCP raises several kinds for a bad directory
        raise TrainError(f"cannot read sharded checkpoint {path}: {exc}") from exc
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
        dcp.load(tensors, storage_reader=dcp.FileSystemReader(os.fspath(path)))
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
    reader = dcp.FileSystemReader(os.fspath(path))
    tensors = {
        key: torch.empty(item.size, dtype=item.properties.dtype)
        for key, item in reader.read_metadata().state_dict_metadata.items()
        if isinstance(item, TensorStorageMetadata)
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
