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
    early_stop    early stopping's {best, waited}, or None (optional)
    kept          the kept best-step<N>/epoch-<N> checkpoints (optional)
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

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..compiler.loaded import Spec
from .errors import RunError, TrainError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAMES",
    "KEPT_NAME",
    "UnreadableCheckpointError",
    "check_resumable",
    "check_state",
    "copy_checkpoint",
    "copy_directory",
    "load_checkpoint",
    "partial_directory",
    "read_run_checkpoint",
    "recover_directory",
    "remove_partial",
    "replace_directory",
    "restore_rng",
    "restoring",
    "rng_state",
    "save_checkpoint",
    "spec_hash",
]

CHECKPOINT_FORMAT = 1


class UnreadableCheckpointError(TrainError):
    """A checkpoint that cannot be read, or is damaged: ``--resume --overwrite``
    starts over instead."""


#: The names of checkpoints in a run's checkpoints/ folder.
CHECKPOINT_NAMES = ("last.pt", "best.pt", "last.dcp", "best.dcp")
#: The names of the checkpoints kept besides those (see retention.py).
KEPT_NAME = re.compile(r"(best-step|epoch-)\d+\.(pt|dcp)")
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
    """An OSError (a read-only folder, a full disk) is a TrainError naming the file;
    the previous file at ``target`` is then unchanged."""
    partial = target.with_name(f".{target.name}.{os.getpid()}{_PARTIAL_SUFFIX}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            kept = " (the previous one is unchanged)" if target.exists() else ""
            reason = exc.strerror or str(exc)
            raise TrainError(f"cannot write {target}: {reason}{kept}") from None
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


def remove_partial(
    directory: str | os.PathLike[str], names: Iterable[str] = CHECKPOINT_NAMES
) -> list[Path]:
    """Delete temporary files (and sharded checkpoint directories) left by a
    process killed while writing one of ``names``: ``.NAME.PID.partial`` files and
    ``.NAME.partial`` directories, nothing else (and no symbolic link)."""
    alternatives = [re.escape(n) for n in names]
    if names is CHECKPOINT_NAMES:  # and the kept copies' (retention.py)
        alternatives.append(KEPT_NAME.pattern)
    pattern = re.compile(
        "|".join(
            rf"\.(?:{name})(\.\d+)?{re.escape(_PARTIAL_SUFFIX)}"
            for name in alternatives
        )
    )
    removed = []
    for leftover in sorted(Path(directory).glob(f".*{_PARTIAL_SUFFIX}")):
        if not pattern.fullmatch(leftover.name) or leftover.is_symlink():
            continue
        if leftover.is_dir():
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
        raise UnreadableCheckpointError(
            f"cannot read checkpoint {path}: {exc}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UnreadableCheckpointError(
            f"{path} is not a checkpoint of this version of nnspec "
            f"(format {state.get('format') if isinstance(state, dict) else None!r}, "
            f"expected {CHECKPOINT_FORMAT})"
        )
    check_state(state, path, complete=False)
    return state


_INT, _DICT, _LIST = (int,), (dict,), (list, tuple)
_OPTIONAL_DICT = (dict, type(None))
# What every checkpoint holds, and of which type (a sharded checkpoint's meta.pt
# holds None for model and optimizer).
_REQUIRED: dict[str, tuple[type, ...]] = {
    "model": _OPTIONAL_DICT,
    "optimizer": _OPTIONAL_DICT,
    "scheduler": _OPTIONAL_DICT,
    "scaler": _OPTIONAL_DICT,
    "rng": _DICT,
    "epoch": _INT,
    "epoch_step": _INT,
    "step": _INT,
    "window": _DICT,
    "best": _OPTIONAL_DICT,
    "spec_hash": (str,),
    "params": _DICT,
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "epoch_samples": _INT,
    "world_size": _INT,
    "global_batch": _INT,
    "rank_rng": (list, type(None)),
    "early_stop": _OPTIONAL_DICT,
    "kept": _OPTIONAL_DICT,
}


def _kind(value: Any) -> str:
    return type(value).__name__


def check_state(
    state: dict[str, Any], path: str | os.PathLike[str], *, complete: bool = True
) -> None:
    """Refuse a checkpoint that loads but lacks what a resume reads, or holds it with
    another type (a damaged or hand-made file), with a one-line TrainError.
    ``complete=False`` checks only the keys present (a file read for its weights)."""

    def damaged(what: str) -> TrainError:
        return UnreadableCheckpointError(f"checkpoint {path} is damaged: {what}")

    for key, kinds in (*_REQUIRED.items(), *_OPTIONAL.items()):
        if key not in state:
            if key in _REQUIRED and complete:
                raise damaged(f"it has no {key!r}")
            continue
        value = state[key]
        if not isinstance(value, kinds) or (kinds is _INT and isinstance(value, bool)):
            raise damaged(f"{key!r} is a {_kind(value)}")
        if isinstance(value, int) and value < 0:
            raise damaged(f"{key!r} is {value}")
    if not complete:
        model = state.get("model")
        if isinstance(model, dict):
            for key, value in model.items():
                if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                    raise damaged(
                        f"model entry {key!r} is a {_kind(value)}, not a tensor"
                    )
        return
    model = state["model"]
    if model is not None:
        for key, value in model.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise damaged(f"model entry {key!r} is a {_kind(value)}, not a tensor")
    optimizer = state["optimizer"]
    if optimizer is not None and not (
        isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), _LIST)
    ):
        raise damaged("'optimizer' lacks its state or param_groups")
    rng = state["rng"]
    if not isinstance(rng.get("torch"), torch.Tensor) or not isinstance(
        rng.get("python"), _LIST
    ):
        raise damaged("'rng' lacks the torch or Python random state")
    window = state["window"]
    if not isinstance(window.get("first_step"), int) or not isinstance(
        window.get("losses"), torch.Tensor
    ):
        raise damaged("'window' lacks first_step or losses")
    best = state["best"]
    if best is not None and not (
        isinstance(best.get("monitor"), str)
        and isinstance(best.get("value"), (int, float))
        and isinstance(best.get("step"), int)
    ):
        raise damaged("'best' lacks monitor, value or step")


@contextlib.contextmanager
def restoring(path: str | os.PathLike[str]) -> Iterator[None]:
    """Putting a checkpoint's states into place: what torch raises for values of
    the wrong shape or kind (a damaged or hand-made file that loads) becomes a
    one-line TrainError naming the checkpoint."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        lines = str(exc).strip().splitlines()
        raise TrainError(
            f"checkpoint {path} is damaged: cannot restore it "
            f"({type(exc).__name__}: {lines[0] if lines else 'no details'})"
        ) from None


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
    text = (
        f"cannot resume from {path}: the model differs from the one it was trained "
        f"with ({shown}). Resume with the spec and params of that run, or start a "
    )
    raise TrainError(
        text + "new run (another out_dir, or overwrite=True)",
        command_line=text + "new run (--out DIR, or --overwrite)",
    )


def read_run_checkpoint(run_dir: Path, which: str) -> dict[str, Any]:
    """The ``best`` or ``last`` checkpoint of a run directory, read safely; a missing
    or unreadable one is a RunError (naming ``nnspec consolidate`` for an FSDP run's
    shards)."""
    from .rundir import RunDir

    run = RunDir(run_dir)
    source = run.best if which == "best" else run.last
    if not source.exists():
        sharded = RunDir(run_dir, sharded=True)
        shards = sharded.best if which == "best" else sharded.last
        if shards.exists():  # an FSDP run: its checkpoints are sharded
            raise RunError(
                f"{run_dir} has no {which} checkpoint ({source}) but "
                f"a sharded one of an FSDP run: `nnspec consolidate {shards}` "
                f"writes {source}; then export again"
            )
        raise RunError(f"{run_dir} has no {which} checkpoint ({source})")
    try:
        return load_checkpoint(source)
    except TrainError as exc:
        raise RunError(str(exc)) from None
