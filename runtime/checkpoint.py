"""Checkpoints: everything a run needs to continue exactly, never half-written.

A checkpoint is one ``torch.save`` file holding plain data and tensors only, so
``torch.load(path, weights_only=True)`` reads all of it::

    format        CHECKPOINT_FORMAT
    model         the model's state_dict (keys as in the generated class)
    optimizer     optimizer.state_dict()
    scheduler     scheduler.state_dict() or None
    scaler        GradScaler.state_dict() (float16 runs) or None
    rng           torch (and CUDA, Python, NumPy) random states
    epoch         epochs completed
    epoch_step    optimizer steps done in the current epoch (its position)
    step          optimizer steps done in all
    window        the loss summed since the last logged step, and its count
    best          {monitor, value, step} of the best validation, or None
    spec_hash     hash of the model part of the spec with its params
    params        the params the model was built with
    torch_version, nnspec_version

It is written to a temporary file beside the target, flushed and fsynced, then
renamed over the target (atomic on POSIX and Windows), and the directory is fsynced.
A process killed at any moment leaves either the old checkpoint or the new one.

A run of several processes adds ``world_size``, ``global_batch``, ``epoch_samples``
(samples of the current epoch already used, whatever the batch) and ``rank_rng``
(the random states of every rank). Sharded checkpoints (FSDP) are directories, put
in place with ``replace_directory`` (see ``nnspec.runtime.sharded``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnspec.api import Spec

from .errors import TrainError

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_resumable",
    "copy_checkpoint",
    "copy_directory",
    "load_checkpoint",
    "partial_directory",
    "recover_directory",
    "remove_partial",
    "replace_directory",
    "restore_rng",
    "rng_state",
    "save_checkpoint",
    "spec_hash",
]

CHECKPOINT_FORMAT = 1
_PARTIAL_SUFFIX = ".partial"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` to ``path`` atomically: temporary file, fsync, rename."""
    target = Path(path)
    _write_atomic(target, lambda f: torch.save(state, f))


def copy_checkpoint(
    source: str | os.PathLike[str], path: str | os.PathLike[str]
) -> None:
    """Copy a checkpoint file to ``path``, atomically like save_checkpoint."""
    with open(source, "rb") as src:
        _write_atomic(Path(path), lambda f: _copy_stream(src, f))


def _copy_stream(src: Any, dst: Any) -> None:
    while chunk := src.read(1 << 20):
        dst.write(chunk)


def _write_atomic(target: Path, write: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}{_PARTIAL_SUFFIX}")
    try:
        with open(partial, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable. Not every platform can open a directory; there the
    rename is as durable as the platform makes it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files (and sharded checkpoint directories) left by a
    process killed while writing a checkpoint."""
    removed = []
    for leftover in Path(directory).glob(f".*{_PARTIAL_SUFFIX}"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def partial_directory(target: Path) -> Path:
    """Where a checkpoint directory is written before ``replace_directory``."""
    return target.with_name(f".{target.name}{_PARTIAL_SUFFIX}")


def _previous_directory(target: Path) -> Path:
    return target.with_name(f".{target.name}.previous")


def replace_directory(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` in place of ``target``.

    Two renames: the old directory aside, the new one in. A process killed
    between them leaves the old one under a name ``recover_directory`` puts back,
    so ``target`` is always the old checkpoint or the new one, never a torn one.
    """
    previous = _previous_directory(target)
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        os.replace(target, previous)
    os.replace(new, target)
    _fsync_directory(target.parent)
    shutil.rmtree(previous, ignore_errors=True)


def copy_directory(source: Path, target: Path) -> None:
    """Copy a checkpoint directory to ``target``, put in place like replace_directory."""
    partial = partial_directory(target)
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(source, partial, copy_function=_copy_synced)
    replace_directory(partial, target)


def _copy_synced(source: str, target: str) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        _copy_stream(src, dst)
        dst.flush()
        os.fsync(dst.fileno())


def recover_directory(target: Path) -> None:
    """After a kill inside ``replace_directory``: put the old directory back, or
    drop it when the new one made it into place."""
    previous = _previous_directory(target)
    if not previous.exists():
        return
    if target.exists():
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(previous, target)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (weights_only: tensors and plain data, no code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise TrainError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(
            f"{path} is not a checkpoint of this version of nnspec "
            f"(format {state.get('format') if isinstance(state, dict) else None!r}, "
            f"expected {CHECKPOINT_FORMAT})"
        )
    return state


# -- random states -----------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The random states a step can draw from: torch (CPU and CUDA), Python, NumPy."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        state["numpy"] = {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the random states saved by rng_state."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np = sys.modules.get("numpy")
    if np is not None and "numpy" in state:
        saved = state["numpy"]
        np.random.set_state(
            (
                saved["name"],
                saved["keys"].numpy().astype("uint32"),
                saved["pos"],
                saved["has_gauss"],
                saved["gauss"],
            )
        )


# -- which model a checkpoint belongs to -------------------------------------------


def spec_hash(spec: Spec) -> str:
    """A hash of what defines the model: the spec without train: and doc:, and the
    params in effect. Comments, layout and train settings do not change it."""
    model = spec.compiled.spec.model_dump(
        mode="json", by_alias=True, exclude={"train", "doc"}
    )
    text = json.dumps(
        {"spec": model, "params": spec.params}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def check_resumable(
    state: dict[str, Any],
    spec: Spec,
    model: nn.Module,
    path: Path,
    shapes: dict[str, list[int]] | None = None,
) -> None:
    """Refuse a checkpoint written for another model, saying what differs.
    ``shapes`` are the checkpoint's tensor shapes by key, when ``state`` holds no
    ``model`` (a sharded checkpoint)."""
    if state.get("spec_hash") == spec_hash(spec):
        return
    details = []
    old_params = state.get("params") or {}
    for name in sorted(set(old_params) | set(spec.params)):
        old, new = old_params.get(name, "(none)"), spec.params.get(name, "(none)")
        if old != new:
            details.append(f"param {name}: {old!r} then, {new!r} now")
    old_shapes = (
        shapes
        if shapes is not None
        else {k: list(v.shape) for k, v in state["model"].items()}
    )
    new_shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    for key in sorted(set(old_shapes) | set(new_shapes)):
        if key not in new_shapes:
            details.append(f"{key} is gone")
        elif key not in old_shapes:
            details.append(f"{key} is new")
        elif old_shapes[key] != new_shapes[key]:
            details.append(f"{key}: {old_shapes[key]} then, {new_shapes[key]} now")
    if not details:
        details.append("the layers, init or freeze rules changed")
    shown = "; ".join(details[:5]) + ("; ..." if len(details) > 5 else "")
    raise TrainError(
        f"cannot resume from {path}: the model differs from the one it was trained "
        f"with ({shown}). Resume with the spec and params of that run, or start a "
        "new run (--out DIR, or --overwrite)"
    )
