"""Validation: the loss and metrics over the validation data, and the checks
around it (a non-finite value traced to its batch; each loss tried once on the
model's outputs before the first step)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .device import autocast
from .errors import TrainError
from .metrics import Tally, batch_values

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = [
    "check_losses",
    "check_validation_finite",
    "evaluate",
    "first_non_finite_batch",
    "validate",
]


def validate(trainer: Trainer, epoch: int, step: int) -> tuple[bool, bool]:
    """Validate, log, track the best value and early stopping. Returns whether
    it improved on the best, and whether it joins the k best kept."""
    t = trainer.settings.train
    trainer.window.check_finite(trainer.run, trainer._saved_step)
    with trainer.window.paused():
        record = evaluate(trainer, epoch, step)
        check_validation_finite(trainer, record, epoch, step)
    value = record[t.monitor]
    improved = math.isfinite(value) and (
        trainer.best is None
        or (
            value > trainer.best["value"]
            if trainer.settings.higher_is_better(t.monitor)
            else value < trainer.best["value"]
        )
    )
    if improved:
        trainer.best = {"monitor": t.monitor, "value": value, "step": step}
        trainer.log.best(t.monitor, value, step)
    trainer.log.val(record, best=improved)
    trainer.last_validation = record
    if isinstance(trainer.scheduler, ReduceLROnPlateau):
        trainer.scheduler.step(value)
    ranked = math.isfinite(value) and trainer.kept.offer(step, value)
    if trainer.early is not None and trainer.early.update(value, step):
        trainer.stop(trainer.early.reason)
    trainer.callbacks.validation(trainer, record)
    return improved, ranked


def check_validation_finite(
    trainer: Trainer, record: dict[str, Any], epoch: int, step: int
) -> None:
    """A NaN or infinite validation value stops the run (no best.pt could be
    picked from it), naming the first validation batch that gives one and the
    data array that holds a non-finite value, if one does."""
    bad = {
        k: v
        for k, v in record.items()
        if k not in ("step", "epoch") and not math.isfinite(v)
    }
    if not bad:
        return
    values = ", ".join(f"{k} {v}" for k, v in bad.items())
    where = first_non_finite_batch(trainer)
    last = trainer.run.last
    kept = (
        f"the last checkpoint is {last} (step {trainer._saved_step})"
        if trainer._saved_step is not None
        else "no checkpoint was written"
    )
    raise TrainError(
        f"validation at step {step} (epoch {epoch}) gives {values}{where}; "
        f"training stopped and {kept}. Check the validation data"
    )


@torch.no_grad()
def first_non_finite_batch(trainer: Trainer) -> str:
    """Where a non-finite validation value first comes from (a second pass over
    the validation data, one host sync a batch: only after one was found)."""
    s, data = trainer.settings, trainer.val_data
    assert data is not None
    samples, size = data.samples, data.batch_size
    dims = {name: (v.batch_dim or 0) for name, v in s.outputs.items()}
    trainer.model.eval()
    try:
        for j, (batch, real) in enumerate(data.padded()):
            if real == 0:
                continue
            with autocast(trainer.device, s.train.precision):
                outputs = trainer._forward(batch)
                batch = {k: v[:real] for k, v in batch.items()}
                outputs = {
                    k: v.narrow(dims.get(k, 0), 0, real) if isinstance(v, Tensor) else v
                    for k, v in outputs.items()
                }
                loss, _ = trainer._loss(outputs, batch)
            values = [loss.float(), *batch_values(s.metrics, outputs, batch)]
            if bool(torch.isfinite(torch.stack(values)).all()):
                continue
            number = data.rank + j * data.world_size  # the batch in all ranks
            text = f": first in validation batch {number + 1}"
            for name, array in batch.items():
                if not array.is_floating_point():
                    continue
                rows = (~torch.isfinite(array)).reshape(real, -1).any(dim=1)
                found = rows.nonzero()
                if len(found):
                    row = int(found[0])
                    value = float(array[row][~torch.isfinite(array[row])][0])
                    sample = samples.source_index(number * size + row)
                    return (
                        f"{text}, whose array {name!r} holds {value} at "
                        f"sample {sample} of {samples.where}"
                    )
            return f"{text}, whose data is finite: the model's outputs are not"
        return ""  # in another process's share of the batches
    finally:
        trainer._train_mode()


@torch.no_grad()
def evaluate(trainer: Trainer, epoch: int, step: int) -> dict[str, Any]:
    """Loss and metrics over every validation sample, read back once. With
    several processes each takes a share of the batches, and the sums are
    added up over all of them."""
    s = trainer.settings
    data = trainer.val_data
    assert data is not None  # only called when the run validates
    batch_dims = {name: (v.batch_dim or 0) for name, v in s.outputs.items()}
    loss_sum = torch.zeros((), device=trainer.device)
    terms_sum = torch.zeros(len(s.losses), device=trainer.device)
    tally = Tally(s.metrics, trainer.device)
    trainer.model.eval()
    for batch, real in data.padded():
        with autocast(trainer.device, s.train.precision):
            outputs = trainer._forward(batch)
            if real == 0:  # a rank's filler batch: the others had one more
                continue
            # Drop the padding of a short last batch.
            outputs = {
                k: v.narrow(batch_dims.get(k, 0), 0, real)
                if isinstance(v, Tensor)
                else v
                for k, v in outputs.items()
            }
            batch = {k: v[:real] for k, v in batch.items()}
            loss, terms = trainer._loss(outputs, batch)
        loss_sum += loss * real
        if terms is not None:
            terms_sum += terms * real
        tally.update(outputs, batch)
    trainer._train_mode()
    n = len(data)
    # One tensor of sums (float64 counts are exact), added up over the ranks.
    sums = torch.cat([loss_sum.view(1), terms_sum]).double()
    values = trainer.cluster.sum(sums).tolist()
    record: dict[str, Any] = {
        "step": step,
        "epoch": epoch,
        "val_loss": values[0] / n,
    }
    if len(s.losses) > 1:
        for term, value in zip(s.losses, values[1 : 1 + len(s.losses)]):
            record[f"val_loss_{term.output}"] = value / n
    record.update(tally.values(trainer.cluster.sum))
    return record


def check_losses(trainer: Trainer) -> None:
    """One eager forward (eval mode, random state untouched): a loss that cannot
    take its output and target is reported at its line in the spec now, rather
    than as a traceback at the first step."""
    s = trainer.settings
    batch, _ = next(iter(trainer.train_data.padded()))
    devices = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        trainer.model.eval()
        try:
            with autocast(trainer.device, s.train.precision):
                outputs = trainer._forward(batch)
                for term in s.losses:
                    problem = term.problem(outputs, batch)
                    if problem is not None:
                        raise s.error(("loss", term.output), problem)
        finally:
            trainer._train_mode()
