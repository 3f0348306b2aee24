"""A run's checkpoints in and out: the run directory prepared (and the checkpoint
to resume from read), each checkpoint's state written, with the kept copies of
retention.py, and a checkpoint's state put back into a resumed run."""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..spec.version import __version__
from .checkpoint import (
    CHECKPOINT_FORMAT,
    UnreadableCheckpointError,
    check_resumable,
    check_state,
    rng_state,
)
from .errors import TrainError
from .logs import flat_hparams
from .schedule_run import restore_scheduler

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["build_network", "log_start", "open_run_dir", "restore", "save"]


def save(trainer: Trainer, improved: bool) -> None:
    """Write checkpoints/last.pt (and best.pt on a new best, and the kept copies
    of retention.py); never a NaN state. Then the callbacks' on_checkpoint."""
    trainer.window.check_finite(trainer.run, trainer._saved_step)
    main = trainer.cluster.main
    with trainer.window.paused():
        trainer.log.flush()  # what was logged up to here survives a kill
        trainer.kept.remove_dropped(main)  # before the state that no longer lists them
        position = trainer.position
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": None,  # the model's and optimizer's: filled in by save
            "optimizer": None,
            "scheduler": trainer.scheduler.state_dict() if trainer.scheduler else None,
            "scaler": trainer.scaler.state_dict()
            if trainer.scaler.is_enabled()
            else None,
            "rng": rng_state(),
            "epoch": position.epoch,
            "epoch_step": position.epoch_step,
            "epoch_samples": position.epoch_samples,
            "step": position.step,
            "world_size": trainer.cluster.world.size,
            "global_batch": trainer.samples_per_step,
            "window": trainer.window.state(),
            "best": trainer.best,
            "early_stop": trainer.early.state() if trainer.early else None,
            "kept": trainer.kept.state(),
            "spec_hash": trainer.spec_hash,
            "params": trainer.spec.params,
            "torch_version": str(torch.__version__),
            "nnspec_version": __version__,
        }
        trainer.cluster.save(
            state, trainer.network, trainer.optimizer, trainer.run, best=improved
        )
        trainer.kept.copy_new(main)
        trainer.cluster.barrier()  # the copies exist when save returns on any rank
    trainer._saved_step = position.step
    trainer.callbacks.checkpoint(trainer, trainer.run.last)


def restore(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Continue from a checkpoint: weights, optimizer, schedule, random states,
    best value and the unlogged loss. (The position is set already.)"""
    last = trainer.run.last
    shapes = checkpoint.get("model_shapes")  # a sharded checkpoint holds no model
    check_resumable(checkpoint, trainer.spec, trainer.network, last, shapes)
    trainer.cluster.load_states(checkpoint, trainer.network, trainer.optimizer, last)
    if trainer.scheduler is not None and checkpoint["scheduler"] is not None:
        restore_scheduler(trainer, checkpoint["scheduler"])
    if checkpoint["scaler"] is not None:
        trainer.scaler.load_state_dict(checkpoint["scaler"])
    trainer.cluster.restore_rng(checkpoint, trainer.settings.train.seed)
    trainer.best = checkpoint["best"]
    main = trainer.cluster.main
    if (
        main
        and trainer.best is not None
        and trainer.best["step"] == trainer.position.step
    ):
        # The run may have been killed between writing last.pt and copying it.
        trainer.cluster.copy_best(trainer.run)
    if trainer.early is not None:
        trainer.early.restore(checkpoint.get("early_stop"))
        if trainer.early.waited >= trainer.early.patience:  # it stopped the run here
            trainer.stop(trainer.early.reason)
    trainer.kept.restore(checkpoint.get("kept"), trainer.position.step, main)
    trainer.window.restore(checkpoint["window"])
    trainer._saved_step = trainer.position.step
    if main:
        trainer.run.keep_metrics_until(trainer.position.step)


# -- set-up ----------------------------------------------------------------------


def build_network(trainer: Trainer) -> nn.Module:
    """The spec's model. What building it warns about (a ``strict: false``
    weights report) is printed as nnspec's own warning, once, by rank 0."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        network = trainer.spec.build()
    for warning in caught:
        if warning.category is UserWarning:
            if trainer.cluster.main:
                print(f"warning: {warning.message}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return network


def open_run_dir(trainer: Trainer) -> dict[str, Any] | None:
    """Prepare the run directory; the checkpoint to resume from, if any."""
    s, run, main = trainer.settings, trainer.run, trainer.cluster.main
    if main:
        run.prepare(resume=trainer.resume, overwrite=trainer.overwrite)
    trainer.cluster.barrier()  # the others read the directory once rank 0 is done
    checkpoint = None
    if trainer.resume:
        checkpoint = _read_resume_checkpoint(trainer)
    if not main:
        return checkpoint
    world, t = trainer.cluster.world, s.train
    document = trainer.spec.compiled.document
    run.write_inputs(
        s.doc.source,
        trainer.spec.source(),
        {
            "spec": trainer.spec.path,
            "params": trainer.spec.params,
            "overrides": s.overrides,
            "train": s.train.model_dump(mode="json"),
            "world_size": world.size,
            "global_batch": t.data.batch_size * world.size * t.accumulate,
        },
        composed=document.data if document.origins else None,
        originals={
            document.path: document.source,
            **{path: text for path, text in document.origins.values()},
        },
    )
    return checkpoint


def _read_resume_checkpoint(trainer: Trainer) -> dict[str, Any] | None:
    """The checkpoint --resume continues from. None (a new run, its old files
    removed) only with --overwrite; otherwise a missing or unreadable checkpoint
    is an error, and nothing in the run directory changes."""
    run = trainer.run
    try:
        checkpoint = trainer.cluster.read_checkpoint(run)
        if checkpoint is not None:
            check_state(checkpoint, run.last)
            return checkpoint
    except UnreadableCheckpointError as exc:
        if not trainer.overwrite:
            raise
        problem = str(exc)
    else:
        problem = f"{run.last} does not exist"
    if not trainer.overwrite:
        raise TrainError(
            f"cannot resume: {problem}; start over in {run.root} with --overwrite "
            "(or train without --resume)"
        )
    if trainer.cluster.main:
        print(f"cannot resume ({problem}): --overwrite, starting a new run")
        run.clear()
    return None


# -- TensorBoard at the start ------------------------------------------------------


def log_start(trainer: Trainer) -> None:
    """The run's HParams (params and train settings, against the best monitored
    value) and, with ``log: {graph: true}``, the model's graph (rank 0)."""
    t = trainer.settings.train
    if not trainer.cluster.main:
        return
    if t.log.hparams:
        values = {
            **flat_hparams(trainer.spec.params, "params."),
            **flat_hparams(t.model_dump(mode="json", exclude={"data"}), "train."),
            "train.batch_size": t.data.batch_size,
        }
        trainer.log.hparams(values, t.monitor)
    if t.log.graph:
        batch, _ = next(iter(trainer.train_data.padded()))
        inputs = tuple(batch[name] for name in trainer.inputs)
        devices = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            trainer.network.eval()
            try:
                trainer.log.graph(trainer.network, inputs)
            finally:
                trainer._train_mode()
