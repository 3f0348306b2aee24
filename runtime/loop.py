"""The training loop. ``Trainer._fit`` is the whole run; read it top to bottom.

Per step the loop reads nothing back from the device: losses are summed on the
device and read every ``log_every`` steps, at validations and checkpoints, which
is also where a NaN or infinite loss is noticed (and named by its step).

A checkpoint holds the position inside the epoch, and each epoch's sample order
is a function of (seed, epoch), so a resumed run skips straight to where it was
and goes on exactly as an uninterrupted run would have.

Under torchrun every process runs this loop; ``self.cluster`` (distributed.py)
wraps the model, shares out the data, reduces what is logged and writes the
checkpoints. In one process its hooks do nothing.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from nnspec import __version__
from nnspec.api import Spec, load

from .checkpoint import (
    CHECKPOINT_FORMAT,
    UnreadableCheckpointError,
    check_resumable,
    check_state,
    restoring,
    rng_state,
    spec_hash,
)
from .compile_check import (
    check_compiled,
    eager_random_numbers,
    eager_reference,
    tolerance,
)
from .data import Batch, Batches, Split, load_split, write_split
from .device import (
    autocast,
    compile_errors,
    compile_failure,
    compile_model,
    prepare_device,
)
from .distributed import DEFAULT_TIMEOUT, Cluster
from .errors import NonFiniteLossError, TrainError
from .logs import RunLog, SilentLog, require_training_extras
from .param_groups import optimizer_groups, unfreeze_at
from .rundir import RunDir
from .settings import ELEMENTWISE_LOSSES, Settings, output_names, resolve_settings

__all__ = ["FitResult", "Trainer"]


@dataclass
class FitResult:
    """How a run ended: ``completed`` or ``interrupted`` (Ctrl-C, SIGTERM)."""

    status: str
    step: int
    epoch: int
    run_dir: Path
    best: dict[str, Any] | None
    last_validation: dict[str, Any] | None


@dataclass
class _Plan:
    steps_per_epoch: int  # optimizer steps in one pass over the training data
    max_steps: int  # where the run stops: epochs or steps, whichever comes first
    epochs: int  # epochs begun by then
    epochs_end: int | None = None  # the step where the epochs setting alone stops


@dataclass
class _Position:
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # optimizer steps done in the current epoch
    step: int = 0  # optimizer steps done in all
    epoch_samples: int = 0  # samples of the current epoch's order used

    @classmethod
    def of(
        cls, checkpoint: dict[str, Any] | None, samples_per_step: int, samples: int
    ) -> _Position:
        """Where a run starts: at 0, or where its checkpoint left off, counted in
        samples of the epoch's order, so a run resumed with another global batch
        (another number of processes) goes on from the same sample."""
        if checkpoint is None:
            return cls()
        epoch_step = checkpoint["epoch_step"]
        used = checkpoint.get("epoch_samples", epoch_step * samples_per_step)
        if used + samples_per_step > samples:  # no full step left of this epoch
            return cls(checkpoint["epoch"] + 1, 0, checkpoint["step"], 0)
        return cls(checkpoint["epoch"], epoch_step, checkpoint["step"], used)


class Trainer:
    """Trains the model of a spec as its ``train:`` section says.

    ``spec`` is a path or a loaded ``nnspec.Spec``; ``out_dir`` defaults to
    ``runs/<spec stem>``. ``overrides`` replace keys of the train section
    (``{"optimizer.lr": 0.01}``). ``resume`` continues from the run's last
    checkpoint; ``overwrite`` starts over in a directory that holds a run.
    ``progress`` shows a bar (default: when standard error is a terminal).

    Started by torchrun (``nnspec train --nproc N``), every process makes a
    Trainer and calls ``fit``: they train as one, with the train section's
    ``strategy``; ``timeout`` is how long, in seconds, a collective waits for the
    other processes before the run fails.
    """

    def __init__(
        self,
        spec: Spec | str | os.PathLike[str],
        out_dir: str | os.PathLike[str] | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        allow_imports: Iterable[str] = (),
        resume: bool = False,
        overwrite: bool = False,
        progress: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        require_training_extras()
        if not isinstance(spec, Spec):
            spec = load(spec, params, allow_imports=allow_imports)
        elif params:
            raise ValueError("params go to nnspec.load; this spec is already built")
        self.spec = spec
        self.settings: Settings = resolve_settings(spec, overrides)
        self.allow_imports = frozenset(allow_imports)
        self.cluster = Cluster(self.settings.train.strategy, timeout)
        stem = Path(spec.path).stem if not spec.path.startswith("<") else spec.name
        self.run = RunDir(
            Path(out_dir) if out_dir is not None else Path("runs") / stem,
            sharded=self.cluster.sharded,
        )
        self.resume = resume
        self.overwrite = overwrite
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.device = self.cluster.place(self.settings.device, self.settings.error)
        self.outputs = output_names(spec)
        self.inputs = list(spec.compiled.model.inputs)
        self.spec_hash = spec_hash(spec)
        self._saved_step: int | None = None  # the step of the newest checkpoint

    # -- the run ---------------------------------------------------------------------

    def fit(self) -> FitResult:
        """Train until the planned step, or until Ctrl-C; returns how the run ended.
        Under torchrun, every process calls it, and they train as one."""
        try:
            with self.cluster.session(self.device):
                return self._fit()
        finally:
            self.run.release()  # the run directory's lock

    def _fit(self) -> FitResult:
        s, t = self.settings, self.settings.train
        checkpoint = self._open_run_dir()

        # Seeds, device, data (with several processes, this rank's share of it).
        torch.manual_seed(t.seed)
        random.seed(t.seed)
        prepare_device(self.device)
        split = load_split(s, self.allow_imports)
        if self.cluster.main:
            write_split(self.run.root, split, s)
        world = self.cluster.world
        batches = partial(
            Batches,
            batch_size=t.data.batch_size,
            device=self.device,
            workers=t.data.workers,
            seed=t.seed,
            rank=world.rank,
            world_size=world.size,
        )
        self.train_data = batches(split.train)
        self.val_data = batches(split.val) if split.val is not None else None
        self.samples_per_step = t.data.batch_size * world.size * t.accumulate
        self.position = _Position.of(
            checkpoint, self.samples_per_step, len(self.train_data)
        )
        self.plan = self._plan(self.train_data)

        # Model (wrapped for DDP or FSDP), optimizer, schedule, losses.
        self.network = self._build().to(self.device)
        if t.unfreeze and self.cluster.distributed:
            raise s.error(
                ("unfreeze",),
                "unfreeze is for runs of one process: DDP and FSDP fix at the start "
                "which parameters take gradients",
                key=True,
            )
        self.model = self.cluster.wrap(
            self.network,
            block_classes={block.name for block in self.spec.compiled.blocks},
            all_outputs_trained=set(s.outputs) <= {term.output for term in s.losses},
        )
        self.cluster.seed(t.seed)
        # Named on the unwrapped network, whose parameters the wrappers share.
        groups = optimizer_groups(self.network, t, s.error)
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer = s.optimizer(groups, **s.optimizer_args)
        self.scheduler = self._make_scheduler()
        self.scaler = self.cluster.scaler(self.device, t.precision)
        for term in s.losses:
            term.module.to(self.device)
        self._check_losses()

        # Start at step 0, or where the checkpoint left off.
        self.window = _Window(
            self.device,
            len(s.losses),
            reduce=self.cluster.mean if self.cluster.distributed else None,
        )
        self.best: dict[str, Any] | None = None
        self.last_validation: dict[str, Any] | None = None
        if checkpoint is not None:
            with restoring(self.run.last):  # a damaged checkpoint: a one-line error
                self._restore(checkpoint)
        if s.compile is not None:
            compile_model(self.model, s.compile)  # DDP: the wrapper, compiled after
        # The first compiled step is checked against eager (compile_check.py); FSDP
        # shards the parameters, so an eager step of the network cannot run there.
        self._check_compile = (
            s.compile is not None and s.compile_check and not self.cluster.sharded
        )

        self.log: RunLog | SilentLog = SilentLog()
        if self.cluster.main:  # rank 0 alone writes logs and shows progress
            self.log = RunLog(
                self.run,
                start_step=self.position.step,
                total_steps=self.plan.max_steps,
                epochs=self.plan.epochs,
                progress=self.progress,
            )
        if self.cluster.main:
            for warning in s.warnings + self._plan_warnings():
                print(warning, file=sys.stderr, flush=True)
        self.log.message(self._describe(split, resumed=checkpoint is not None))
        same_random = (
            eager_random_numbers(s.compile)
            if s.compile is not None and self._check_compile
            else contextlib.nullcontext()
        )
        try:
            with _StopSignals() as signals, same_random:
                stop = self.cluster.stop_vote(signals)
                self._train(stop)
        except compile_errors() as exc:
            if s.compile is None:
                raise
            raise compile_failure(exc, s.compile) from exc
        finally:
            self.log.close()
        return self._result(stop)

    def _train(self, stop: _StopSignals) -> None:
        """The loop: one optimizer step at a time, until the planned step or a stop."""
        t, plan, position = self.settings.train, self.plan, self.position
        samples_per_step = self.samples_per_step  # in all processes
        start_step = step = position.step
        epoch = position.epoch + 1  # 1-based, as shown
        batches = None
        self.model.train()
        while position.step < plan.max_steps and not stop.requested:
            if batches is None:  # a new epoch, or the rest of the one resumed
                if t.unfreeze:
                    unfreeze_at(self.network, t, position.epoch + 1)
                batches = self.train_data.epoch(
                    position.epoch, shuffle=t.data.shuffle, start=position.epoch_samples
                )
                self.log.epoch(position.epoch + 1)
            epoch = position.epoch + 1

            # One optimizer step over `accumulate` batches.
            group = [next(batches) for _ in range(t.accumulate)]
            loss, parts = self._train_step(group)
            stop.step()  # several processes: vote on stopping, without waiting
            position.step += 1
            position.epoch_step += 1
            position.epoch_samples += samples_per_step
            self.window.add(loss, parts, position.step, samples_per_step)
            self.log.advance()

            step = position.step
            # The epoch ends when the rest of its order is short of a full step.
            epoch_end = position.epoch_samples + samples_per_step > len(self.train_data)
            finished = step == plan.max_steps
            if epoch_end:
                position.epoch, position.epoch_step = position.epoch + 1, 0
                position.epoch_samples = 0
                batches.close()
                batches = None

            if step % t.log_every == 0:
                self.log.train(self._read_window(epoch, step))
            # Validate at each epoch end, every val_every steps and at the end.
            improved = False
            if self.val_data is not None and (
                epoch_end or finished or _every(step, t.val_every)
            ):
                improved = self._validate(epoch, step)
            if epoch_end:
                self._epoch_schedule()
            # Checkpoint at each epoch end, every checkpoint_every steps, on a new
            # best, at the end, and when asked to stop.
            if (
                epoch_end
                or finished
                or improved
                or stop.requested
                or _every(step, t.checkpoint_every)
            ):
                self._save(improved)

        if batches is not None:
            batches.close()
        if self.window.steps and step > start_step:  # steps since the last log line
            self.log.train(self._read_window(epoch, step))
        if stop.requested:
            if self._saved_step != position.step:  # asked before the first step
                self._save(improved=False)
            self.log.message(
                f"stopped by {stop.requested} at step {position.step}: saved "
                f"{self.run.last}; continue with --resume"
            )
        elif step == start_step:
            self.log.message(f"the run is at step {step} already: nothing to do")

    def _result(self, stop: _StopSignals) -> FitResult:
        if not stop.requested and self.cluster.main:
            done = f"done at step {self.position.step}"
            if self.best is not None:
                done += (
                    f"; best {self.best['monitor']} {self.best['value']:.4g} "
                    f"at step {self.best['step']}"
                )
            print(f"{done}; checkpoints in {self.run.checkpoints}", flush=True)
        return FitResult(
            "interrupted" if stop.requested else "completed",
            self.position.step,
            self.position.epoch,
            self.run.root,
            self.best,
            self.last_validation,
        )

    # -- one step --------------------------------------------------------------------

    def _train_step(self, group: list[Batch]) -> tuple[Tensor, Tensor | None]:
        """Forward, backward and update over `accumulate` batches; no host sync.
        Returns the loss and (with several terms) each term, on the device."""
        t = self.settings.train
        reference = self._eager_reference(group) if self._check_compile else None
        losses, terms = [], []
        for i, batch in enumerate(group):
            # DDP averages the gradients over the processes after the last batch.
            with self.cluster.accumulating(self.model, last=i == len(group) - 1):
                with autocast(self.device, t.precision):
                    outputs = self._forward(batch)
                    loss, parts = self._loss(outputs, batch)
                scaled = loss if len(group) == 1 else loss / len(group)
                self.scaler.scale(scaled).backward()
            losses.append(loss.detach())
            terms.append(parts)
        if reference is not None:
            self._check_compiled(reference, torch.stack(losses).mean())
        if t.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, t.grad_clip)
        self.scaler.step(self.optimizer)  # skipped when float16 gradients overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self._steps_per("step"):
            self.scheduler.step()
        if len(group) == 1:
            return losses[0], terms[0]
        mean_terms = (
            None
            if terms[0] is None
            else torch.stack([t for t in terms if t is not None]).mean(dim=0)
        )
        return torch.stack(losses).mean(), mean_terms

    def _eager_reference(self, group: list[Batch]) -> Any:
        """The step's forward and backward run eagerly, changing nothing."""
        t = self.settings.train

        def step() -> Tensor:
            losses = []
            for batch in group:
                with autocast(self.device, t.precision):
                    outputs = self._forward(batch, self.network)
                    loss, _ = self._loss(outputs, batch)
                scaled = loss if len(group) == 1 else loss / len(group)
                self.scaler.scale(scaled).backward()
                losses.append(loss.detach())
            return torch.stack(losses).mean()

        reduce = self.cluster.mean if self.cluster.distributed else None
        return eager_reference(step, self.network, self.params, self.device, reduce)

    def _check_compiled(self, reference: Any, loss: Tensor) -> None:
        """Stop before the first update if the compiled step differs from eager."""
        self._check_compile = False
        options, precision = self.settings.compile or {}, self.settings.train.precision
        names = {id(p): name for name, p in self.network.named_parameters()}
        worst = check_compiled(
            reference,
            loss,
            [(names.get(id(p), "?"), p) for p in self.params],
            tol=tolerance(precision, self.device),
            backend=options.get("backend", "inductor"),
            precision=precision,
            reduce=self.cluster.mean if self.cluster.distributed else None,
        )
        if worst is None:  # overflowed: float16 checks the next step, with less scale
            self._check_compile = precision == "16-mixed"
            return
        self.log.message(
            f"compile check: the compiled first step matches eager (largest "
            f"difference {worst:.2g} of a gradient's norm)"
        )

    def _forward(
        self, batch: Batch, model: nn.Module | None = None
    ) -> dict[str, Tensor]:
        """The model's outputs by name, whatever forward returns."""
        model = self.model if model is None else model
        out = model(*[batch[name] for name in self.inputs])
        if isinstance(out, dict):
            return out
        if isinstance(out, tuple):
            return dict(zip(self.outputs, out))
        return {self.outputs[0]: out}

    def _loss(
        self, outputs: dict[str, Tensor], batch: Batch
    ) -> tuple[Tensor, Tensor | None]:
        """The weighted sum of the loss terms (float32), and with several terms
        the terms themselves (detached)."""
        losses = self.settings.losses
        values = [
            term.module(outputs[term.output], batch[term.target]) for term in losses
        ]
        if len(losses) == 1 and losses[0].weight == 1.0:
            return values[0].float(), None
        total = losses[0].weight * values[0].float()
        for term, value in zip(losses[1:], values[1:]):
            total = total + term.weight * value.float()
        if len(losses) == 1:
            return total, None
        return total, torch.stack([v.detach().float() for v in values])

    def _steps_per(self, interval: str) -> bool:
        """Whether the scheduler steps once per `interval` ("step" or "epoch")."""
        spec = self.settings.train.scheduler
        return (
            spec is not None
            and spec.interval == interval
            and not isinstance(self.scheduler, ReduceLROnPlateau)
        )

    def _epoch_schedule(self) -> None:
        if self._steps_per("epoch"):
            self.scheduler.step()

    def _read_window(self, epoch: int, step: int) -> dict[str, Any]:
        self.window.check_finite(self.run, self._saved_step)
        return self.window.read(
            step=step,
            epoch=epoch,
            lr=self.optimizer.param_groups[0]["lr"],
            names=[term.output for term in self.settings.losses],
        )

    # -- validation ------------------------------------------------------------------

    def _validate(self, epoch: int, step: int) -> bool:
        """Validate, log, track the best value; True if it improved."""
        t = self.settings.train
        self.window.check_finite(self.run, self._saved_step)
        with self.window.paused():
            record = self._evaluate(epoch, step)
            self._check_validation_finite(record, epoch, step)
        value = record[t.monitor]
        improved = math.isfinite(value) and (
            self.best is None
            or (
                value > self.best["value"]
                if self.settings.higher_is_better(t.monitor)
                else value < self.best["value"]
            )
        )
        if improved:
            self.best = {"monitor": t.monitor, "value": value, "step": step}
        self.log.val(record, best=improved)
        self.last_validation = record
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(value)
        return improved

    def _check_validation_finite(
        self, record: dict[str, Any], epoch: int, step: int
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
        where = self._first_non_finite_batch()
        last = self.run.last
        kept = (
            f"the last checkpoint is {last} (step {self._saved_step})"
            if self._saved_step is not None
            else "no checkpoint was written"
        )
        raise TrainError(
            f"validation at step {step} (epoch {epoch}) gives {values}{where}; "
            f"training stopped and {kept}. Check the validation data"
        )

    @torch.no_grad()
    def _first_non_finite_batch(self) -> str:
        """Where a non-finite validation value first comes from (a second pass over
        the validation data, one host sync a batch: only after one was found)."""
        s, data = self.settings, self.val_data
        assert data is not None
        samples, size = data.samples, data.batch_size
        dims = {name: (v.batch_dim or 0) for name, v in s.outputs.items()}
        self.model.eval()
        try:
            for j, (batch, real) in enumerate(data.padded()):
                if real == 0:
                    continue
                with autocast(self.device, s.train.precision):
                    outputs = self._forward(batch)
                    batch = {k: v[:real] for k, v in batch.items()}
                    outputs = {
                        k: v.narrow(dims.get(k, 0), 0, real)
                        if isinstance(v, Tensor)
                        else v
                        for k, v in outputs.items()
                    }
                    loss, _ = self._loss(outputs, batch)
                values = [loss.float()] + [
                    m.metric.score(outputs[m.output], batch[m.target])[0].float()
                    for m in s.metrics
                ]
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
            self.model.train()

    @torch.no_grad()
    def _evaluate(self, epoch: int, step: int) -> dict[str, Any]:
        """Loss and metrics over every validation sample, read back once. With
        several processes each takes a share of the batches, and the sums are
        added up over all of them."""
        s = self.settings
        data = self.val_data
        assert data is not None  # only called when the run validates
        batch_dims = {name: (v.batch_dim or 0) for name, v in s.outputs.items()}
        loss_sum = torch.zeros((), device=self.device)
        terms_sum = torch.zeros(len(s.losses), device=self.device)
        scores = torch.zeros(len(s.metrics), device=self.device)
        counts = [0] * len(s.metrics)
        self.model.eval()
        for batch, real in data.padded():
            with autocast(self.device, s.train.precision):
                outputs = self._forward(batch)
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
                loss, terms = self._loss(outputs, batch)
            loss_sum += loss * real
            if terms is not None:
                terms_sum += terms * real
            for i, m in enumerate(s.metrics):
                score, count = m.metric.score(outputs[m.output], batch[m.target])
                scores[i] += score
                counts[i] += count
        self.model.train()
        n = len(data)
        # One tensor of sums (float64 counts are exact), added up over the ranks.
        sums = torch.cat(
            [
                torch.cat([loss_sum.view(1), terms_sum, scores]).double(),
                torch.tensor(counts, dtype=torch.float64, device=self.device),
            ]
        )
        values = self.cluster.sum(sums).tolist()
        record: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "val_loss": values[0] / n,
        }
        if len(s.losses) > 1:
            for term, value in zip(s.losses, values[1 : 1 + len(s.losses)]):
                record[f"val_loss_{term.output}"] = value / n
        k = len(s.metrics)
        rest = values[1 + len(s.losses) :]
        for m, score, count in zip(s.metrics, rest[:k], rest[k:]):
            record[m.key] = score / max(count, 1)
        return record

    # -- checkpoints -----------------------------------------------------------------

    def _save(self, improved: bool) -> None:
        """Write checkpoints/last.pt (and best.pt on a new best); never a NaN state."""
        self.window.check_finite(self.run, self._saved_step)
        with self.window.paused():
            self.log.flush()  # what was logged up to here survives a kill
            position = self.position
            state = {
                "format": CHECKPOINT_FORMAT,
                "model": None,  # the model's and optimizer's: filled in by save
                "optimizer": None,
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "scaler": self.scaler.state_dict()
                if self.scaler.is_enabled()
                else None,
                "rng": rng_state(),
                "epoch": position.epoch,
                "epoch_step": position.epoch_step,
                "epoch_samples": position.epoch_samples,
                "step": position.step,
                "world_size": self.cluster.world.size,
                "global_batch": self.samples_per_step,
                "window": self.window.state(),
                "best": self.best,
                "spec_hash": self.spec_hash,
                "params": self.spec.params,
                "torch_version": str(torch.__version__),
                "nnspec_version": __version__,
            }
            self.cluster.save(
                state, self.network, self.optimizer, self.run, best=improved
            )
        self._saved_step = position.step

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, random states,
        best value and the unlogged loss. (The position is set already.)"""
        last = self.run.last
        shapes = checkpoint.get("model_shapes")  # a sharded checkpoint holds no model
        check_resumable(checkpoint, self.spec, self.network, last, shapes)
        self.cluster.load_states(checkpoint, self.network, self.optimizer, last)
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            # A filled-in length follows the epochs/steps given now: the schedule
            # built for the new plan keeps its length and goes on from this step.
            planned = (
                _length_state(self.scheduler)
                if self.settings.schedule_length_arg
                else {}
            )
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            if planned and planned != _length_state(self.scheduler):
                _follow_length(self.scheduler, planned)
        if checkpoint["scaler"] is not None:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.cluster.restore_rng(checkpoint, self.settings.train.seed)
        self.best = checkpoint["best"]
        main = self.cluster.main
        if main and self.best is not None and self.best["step"] == self.position.step:
            # The run may have been killed between writing last.pt and copying it.
            self.cluster.copy_best(self.run)
        self.window.restore(checkpoint["window"])
        self._saved_step = self.position.step
        if main:
            self.run.keep_metrics_until(self.position.step)

    # -- set-up ----------------------------------------------------------------------

    def _open_run_dir(self) -> dict[str, Any] | None:
        """Prepare the run directory; the checkpoint to resume from, if any."""
        s, run, main = self.settings, self.run, self.cluster.main
        if main:
            run.prepare(resume=self.resume, overwrite=self.overwrite)
        self.cluster.barrier()  # the others read the directory once rank 0 is done
        checkpoint = None
        if self.resume:
            checkpoint = self._read_resume_checkpoint()
        if not main:
            return checkpoint
        world, t = self.cluster.world, s.train
        document = self.spec.compiled.document
        run.write_inputs(
            s.doc.source,
            self.spec.source(),
            {
                "spec": self.spec.path,
                "params": self.spec.params,
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

    def _read_resume_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint --resume continues from. None (a new run, its old files
        removed) only with --overwrite; otherwise a missing or unreadable checkpoint
        is an error, and nothing in the run directory changes."""
        run = self.run
        try:
            checkpoint = self.cluster.read_checkpoint(run)
            if checkpoint is not None:
                check_state(checkpoint, run.last)
                return checkpoint
        except UnreadableCheckpointError as exc:
            if not self.overwrite:
                raise
            problem = str(exc)
        else:
            problem = f"{run.last} does not exist"
        if not self.overwrite:
            raise TrainError(
                f"cannot resume: {problem}; start over in {run.root} with --overwrite "
                "(or train without --resume)"
            )
        if self.cluster.main:
            print(f"cannot resume ({problem}): --overwrite, starting a new run")
            run.clear()
        return None

    def _plan(self, data: Batches) -> _Plan:
        """Where the run stops, counted from where it starts: a run resumed with
        another global batch (another number of processes) finishes the epoch it
        is in with the steps that are left of it."""
        t, position = self.settings.train, self.position
        steps_per_epoch = data.full_batches // t.accumulate
        if steps_per_epoch == 0:
            need, size = self.samples_per_step, self.cluster.world.size
            product = "batch_size x accumulate"
            if size > 1:
                product = "batch_size x processes x accumulate"
            raise self.settings.error(
                ("data", "batch_size"),
                f"a step takes {product} = {need} samples, but there are "
                f"{len(data)} training samples",
            )
        # Steps left in the current epoch: steps_per_epoch less those done, unless
        # the global batch changed.
        rest = (len(data) - position.epoch_samples) // self.samples_per_step

        def through_epoch(epochs: int) -> int:
            if position.epoch >= epochs:
                return position.step
            return (
                position.step + rest + (epochs - position.epoch - 1) * steps_per_epoch
            )

        limits = []
        epochs_end = None
        if t.epochs is not None:
            epochs_end = through_epoch(t.epochs)
            limits.append(epochs_end)
        if t.steps is not None:
            limits.append(t.steps)
        max_steps = min(limits) if limits else through_epoch(1)
        if max_steps > position.step:
            after = max(0, max_steps - position.step - rest)
            epochs = position.epoch + 1 + math.ceil(after / steps_per_epoch)
        else:
            epochs = math.ceil(max_steps / steps_per_epoch)
        return _Plan(steps_per_epoch, max_steps, epochs, epochs_end)

    def _plan_warnings(self) -> list[str]:
        """Warnings for an override of epochs or steps that the other one makes
        irrelevant (the run stops at whichever comes first)."""
        s, t, plan = self.settings, self.settings.train, self.plan
        if plan.epochs_end is None or t.steps is None or plan.epochs_end == t.steps:
            return []
        key, other = (
            ("steps", "epochs") if plan.epochs_end < t.steps else ("epochs", "steps")
        )
        if key not in s.overrides:
            return []
        return [
            s.warning(
                (key,),
                f"{s.override_text(key)} has no effect: {other}: "
                f"{getattr(t, other)} ends the run first, at step {plan.max_steps}",
            )
        ]

    def _build(self) -> nn.Module:
        """The spec's model. What building it warns about (a ``strict: false``
        weights report) is printed as nnspec's own warning, once, by rank 0."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            network = self.spec.build()
        for warning in caught:
            if warning.category is UserWarning:
                if self.cluster.main:
                    print(f"warning: {warning.message}", file=sys.stderr, flush=True)
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        return network

    def _length(self) -> int:
        """The planned length of the run in the scheduler's interval."""
        spec = self.settings.train.scheduler
        if spec is not None and spec.interval == "step":
            return self.plan.max_steps
        return self.plan.epochs

    def _make_scheduler(self) -> Any:
        s = self.settings
        if s.scheduler is None:
            return None
        if s.scheduler is ReduceLROnPlateau and self.val_data is None:
            raise s.error(
                ("scheduler", "op"),
                "ReduceLROnPlateau steps on a validation value, and this run has no "
                "validation data: give data.val or data.val_fraction",
            )
        arguments = dict(s.scheduler_args)
        if s.schedule_length_arg:
            arguments[s.schedule_length_arg] = self._length()
        self._check_schedule_length(arguments)
        return s.scheduler(self.optimizer, **arguments)

    def _check_schedule_length(self, arguments: Mapping[str, Any]) -> None:
        """OneCycleLR cannot step past its length: a run longer than the schedule
        is refused now, at the argument, rather than failing at that step."""
        spec = self.settings.train.scheduler
        if spec is None or spec.op != "OneCycleLR":
            return
        total = arguments.get("total_steps")
        key = "total_steps"
        if total is None:
            key = "epochs"
            total = arguments.get("epochs", 0) * arguments.get("steps_per_epoch", 0)
        need, unit = self._length(), f"{spec.interval}s"
        if total < need:
            raise self.settings.error(
                ("scheduler", key),
                f"OneCycleLR lasts {total} {unit}, but this run takes {need} "
                f"{unit}; leave total_steps out to fit the schedule to the run, or "
                f"make it at least {need}",
            )

    def _check_losses(self) -> None:
        """One eager forward (eval mode, random state untouched): a loss that cannot
        take its output and target is reported at its line in the spec now, rather
        than as a traceback at the first step."""
        s = self.settings
        batch, _ = next(iter(self.train_data.padded()))
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            self.model.eval()
            try:
                with autocast(self.device, s.train.precision):
                    outputs = self._forward(batch)
                    for term in s.losses:
                        out, target = outputs[term.output], batch[term.target]
                        problem = None
                        if term.op in ELEMENTWISE_LOSSES and out.shape != target.shape:
                            problem = "the shapes differ, and the loss would broadcast"
                        else:
                            try:
                                term.module(out, target)
                            except (
                                RuntimeError,
                                ValueError,
                                IndexError,
                                TypeError,
                            ) as e:
                                problem = _first_line(e)
                        if problem is not None:
                            raise s.error(
                                ("loss", term.output),
                                f"loss {term.op} cannot compare output "
                                f"{term.output!r} {list(out.shape)} ({_dtype(out)}) "
                                f"with target {term.target!r} {list(target.shape)} "
                                f"({_dtype(target)}): {problem}",
                            )
            finally:
                self.model.train()

    def _describe(self, split: Split, *, resumed: bool) -> str:
        t, plan, position = self.settings.train, self.plan, self.position
        val = f", {len(split.val):,} validation" if split.val is not None else ""
        text = (
            f"{self.spec.name}: {len(split.train):,} training{val} samples; "
            f"{plan.steps_per_epoch} steps per epoch, {plan.max_steps} steps "
            f"({_count(plan.epochs, 'epoch')}); {self.device}, {t.precision}"
            + (", compiled" if self.settings.compile is not None else "")
        )
        if self.cluster.distributed:
            text += "; " + self.cluster.describe(t.data.batch_size, t.accumulate)
        if resumed:
            text += (
                f"\nresuming from {self.run.last}: step {position.step}, epoch "
                f"{position.epoch + 1}, step {position.epoch_step} of the epoch"
            )
        return text


class _Window:
    """The losses of the steps since the last logged one, kept on the device: one
    tensor per step, no host sync, no copy. Reading it (every log_every steps, and
    before validations and checkpoints) is where a NaN or infinite loss is found,
    and the step it first appeared at.

    With several processes ``reduce`` averages the steps' losses over them, once,
    where the window is read: every rank then logs and checks the same values."""

    def __init__(
        self,
        device: torch.device,
        terms: int,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.device = device
        self.terms = terms
        self.losses: list[Tensor] = []  # 0-dim, one per step
        self.parts: list[Tensor] | None = [] if terms > 1 else None  # (terms,) each
        self.first_step = 1  # the step of losses[0]
        self.steps = 0
        self.reduce = reduce
        self.reduced = 0  # losses[:reduced] are the means over all processes
        self.samples = 0
        self.started = time.perf_counter()
        self.paused_for = 0.0

    def add(self, loss: Tensor, parts: Tensor | None, step: int, samples: int) -> None:
        # A list append: writing each loss into a preallocated tensor cost ~10 us a
        # step, 2% of a small model's step on a CPU.
        if self.steps == 0:
            self.first_step = step
        self.losses.append(loss)
        if self.parts is not None and parts is not None:
            self.parts.append(parts)
        self.steps += 1
        self.samples += samples

    def _losses(self) -> Tensor:
        if not self.losses:
            return torch.zeros(0, device=self.device)
        return torch.stack(self.losses)

    def _parts(self) -> Tensor | None:
        if self.parts is None:
            return None
        if not self.parts:
            return torch.zeros(0, self.terms, device=self.device)
        return torch.stack(self.parts)

    def _reduce(self) -> None:
        """Average the steps not yet averaged over all processes (a collective)."""
        begin, end = self.reduced, self.steps
        if begin == end or self.reduce is None:
            return
        rows = torch.stack(self.losses[begin:end])[:, None]
        if self.parts is not None:
            rows = torch.cat([rows, torch.stack(self.parts[begin:end])], dim=1)
        rows = self.reduce(rows.contiguous())
        self.losses[begin:end] = list(rows[:, 0])
        if self.parts is not None:
            self.parts[begin:end] = list(rows[:, 1:])
        self.reduced = end

    def check_finite(self, run: RunDir, saved_step: int | None) -> None:
        """Raise NonFiniteLossError if the loss was NaN or infinite at some step."""
        if not self.steps:
            return
        if self.reduce is not None:
            self._reduce()
        losses = self._losses()
        bad = (~torch.isfinite(losses)).nonzero()  # a host sync
        if not len(bad):
            return
        index = int(bad[0])
        step, value = self.first_step + index, float(losses[index])
        kept = (
            f"the last good checkpoint is {run.last} (step {saved_step})"
            if saved_step is not None
            else (
                f"the last good checkpoint is {run.last}"
                if run.last.exists()
                else "no checkpoint was written before it"
            )
        )
        raise NonFiniteLossError(
            f"the loss became {value} at step {step}; training stopped and {kept}. "
            "Lower the learning rate, clip gradients (grad_clip), or check the data",
            step,
        )

    def read(
        self, *, step: int, epoch: int, lr: float, names: list[str]
    ) -> dict[str, Any]:
        """The logged record of the window (a host sync), then an empty window."""
        if self.reduce is not None:
            self._reduce()
        means = [self._losses().mean()]
        parts = self._parts()
        if parts is not None:
            means += list(parts.mean(dim=0))
        values = torch.stack(means).tolist()
        elapsed = time.perf_counter() - self.started - self.paused_for
        record: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "loss": values[0],
            "lr": lr,
            "samples_per_s": self.samples / max(elapsed, 1e-9),
        }
        for name, value in zip(names, values[1:]):
            record[f"loss_{name}"] = value
        self.losses = []
        self.parts = [] if self.parts is not None else None
        self.steps = self.samples = self.reduced = 0
        self.started, self.paused_for = time.perf_counter(), 0.0
        return record

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent here (validation, checkpoints) does not count for throughput."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.paused_for += time.perf_counter() - begin

    def state(self) -> dict[str, Any]:
        """The window's step losses, for a checkpoint: a resumed run logs the same
        means as an uninterrupted one."""
        return {
            "first_step": self.first_step,
            "losses": self._losses(),
            "parts": self._parts(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.losses = list(state["losses"].to(self.device))
        if self.parts is not None and state["parts"] is not None:
            self.parts = list(state["parts"].to(self.device))
        self.first_step, self.steps = state["first_step"], len(self.losses)
        self.reduced = self.steps  # a checkpoint holds the averages


class _StopSignals:
    """The first Ctrl-C (or SIGTERM) asks the loop to stop after the current step,
    with a checkpoint; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def step(self) -> None:
        """A step is done (in several processes, a vote happens here; see
        distributed.py)."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"


# The attributes of a scheduler that its length (total_steps, T_max) determines.
_LENGTH_ATTRIBUTES = ("total_steps", "_schedule_phases", "T_max")


def _length_state(scheduler: Any) -> dict[str, Any]:
    return {
        name: copy.deepcopy(getattr(scheduler, name))
        for name in _LENGTH_ATTRIBUTES
        if hasattr(scheduler, name)
    }


def _follow_length(scheduler: Any, planned: dict[str, Any]) -> None:
    """Give a restored scheduler the length of the new plan, and the learning rate
    the new plan has at the step it is at (as a fresh run of that plan would)."""
    for name, value in planned.items():
        setattr(scheduler, name, value)
    total = getattr(scheduler, "total_steps", None)
    if total is not None and scheduler.last_epoch > total:
        return  # the new plan ended before this step: the run stops at once
    closed_form = getattr(scheduler, "_get_closed_form_lr", None)
    if closed_form is not None:  # CosineAnnealingLR steps recursively otherwise
        for group, lr in zip(scheduler.optimizer.param_groups, closed_form()):
            group["lr"] = lr
        scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
        return
    # OneCycleLR computes its rate (and momentum) from the step alone: redo the step.
    count = scheduler._step_count
    scheduler.last_epoch -= 1
    scheduler.step()
    scheduler._step_count = count


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _every(step: int, interval: int | None) -> bool:
    return interval is not None and step % interval == 0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _dtype(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
