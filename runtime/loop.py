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

The loop's helpers live beside it: plan.py (where a run starts and stops),
window.py (the logged losses), step.py (the compile check's reference, gradient
clipping and norm), stopping.py (signals, early stopping), evaluation.py
(validation), saving.py (set-up, checkpoints in and out, with retention.py's kept
copies), schedules.py and schedule_run.py, callbacks.py, freezing.py, tracing.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..compiler.loaded import Spec, load
from .callbacks import Callbacks
from .checkpoint import restoring, spec_hash
from .compile_check import (
    eager_random_numbers,
)
from .data import Batch, Batches, load_split, write_split
from .device import (
    autocast,
    compile_errors,
    compile_failure,
    compile_model,
    prepare_device,
)
from .distributed import DEFAULT_TIMEOUT, Cluster
from .evaluation import check_losses, validate
from .freezing import keep_frozen_norms_eval, rewrap, wrap
from .logs import RunLog, SilentLog, require_training_extras
from .param_groups import optimizer_groups, unfreeze_at
from .plan import Position, describe, make_plan, plan_warnings
from .retention import Retention
from .rundir import RunDir
from .saving import build_network, log_start, open_run_dir, restore, save
from .schedule_run import make_scheduler
from .schedules import schedule_interval
from .settings import Settings, output_names, resolve_settings
from .step import check_compiled_step, clip_and_measure, eager_step
from .stopping import EarlyStopping, StopSignals
from .tracing import StepTrace, trace_path
from .window import LossWindow

__all__ = ["FitResult", "Trainer"]


@dataclass
class FitResult:
    """How a run ended: ``completed``, ``stopped`` (early stopping, or a callback's
    ``trainer.stop``; ``reason`` says which) or ``interrupted`` (Ctrl-C, SIGTERM)."""

    status: str
    step: int
    epoch: int
    run_dir: Path
    best: dict[str, Any] | None
    last_validation: dict[str, Any] | None
    reason: str | None = None


class Trainer:
    """Trains the model of a spec as its ``train:`` section says.

    ``spec`` is a path or a loaded ``nnspec.Spec``; ``out_dir`` defaults to
    ``runs/<spec stem>``. ``overrides`` replace keys of the train section
    (``{"optimizer.lr": 0.01}``). ``resume`` continues from the run's last
    checkpoint; ``overwrite`` starts over in a directory that holds a run.
    ``progress`` shows a bar (default: when standard error is a terminal).
    ``callbacks`` are objects with some of ``on_step``, ``on_validation`` and
    ``on_checkpoint`` (see callbacks.py). ``profile`` records a torch.profiler
    trace of that many training steps into the run directory (tracing.py).

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
        callbacks: Iterable[Any] = (),
        profile: int | None = None,
    ) -> None:
        require_training_extras()
        if not isinstance(spec, Spec):
            spec = load(spec, params, allow_imports=allow_imports)
        elif params:
            raise ValueError("params go to nnspec.load; this spec is already built")
        if profile is not None and profile < 1:
            raise ValueError(f"profile is a number of steps, at least 1: {profile}")
        self.spec = spec
        self.settings: Settings = resolve_settings(
            spec, overrides, allow_imports=allow_imports
        )
        self.allow_imports = frozenset(allow_imports)
        self.callbacks = Callbacks(callbacks)
        self.profile = profile
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
        self._stop_reason: str | None = None  # early stopping or a callback's stop
        self._grad_norm: Tensor | None = None  # the last step's (log: grad_norm)

    def stop(self, reason: str = "a callback") -> None:
        """End the run after the current step, with a checkpoint (from a callback)."""
        if self._stop_reason is None:
            self._stop_reason = reason

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
        checkpoint = open_run_dir(self)

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
        self.position = Position.of(
            checkpoint, self.samples_per_step, len(self.train_data)
        )
        self.plan = make_plan(self, self.train_data)

        # Model (wrapped for DDP or FSDP), optimizer, schedule, losses.
        self.network = build_network(self).to(self.device)
        if t.unfreeze and self.cluster.sharded:
            raise s.error(
                ("unfreeze",),
                "unfreeze cannot be used with strategy fsdp: FSDP shards the "
                "parameters when it wraps the model and keeps the gradients of those "
                "that took gradients then; use strategy ddp, or one process",
                key=True,
            )
        self.model = wrap(self)
        self.cluster.seed(t.seed)
        # Named on the unwrapped network, whose parameters the wrappers share.
        groups = optimizer_groups(self.network, t, s.error)
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer = s.optimizer(groups, **s.optimizer_args)
        self.scheduler = make_scheduler(self)
        self.scaler = self.cluster.scaler(self.device, t.precision)
        for term in s.losses:
            term.to(self.device)
        check_losses(self)

        # Start at step 0, or where the checkpoint left off.
        self.window = LossWindow(
            self.device,
            len(s.losses),
            reduce=self.cluster.mean if self.cluster.distributed else None,
        )
        self.best: dict[str, Any] | None = None
        self.last_validation: dict[str, Any] | None = None
        better = s.higher_is_better(t.monitor)
        self.early = (
            EarlyStopping(
                t.monitor, better, t.early_stop.patience, t.early_stop.min_delta
            )
            if t.early_stop is not None
            else None
        )
        self.kept = Retention(self.run, t.checkpoints, better)
        if checkpoint is not None:
            with restoring(self.run.last):  # a damaged checkpoint: a one-line error
                restore(self, checkpoint)
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
                csv=t.log.csv,
            )
        if self.cluster.main:
            for warning in s.warnings + plan_warnings(self):
                print(warning, file=sys.stderr, flush=True)
        self.log.message(describe(self, split, resumed=checkpoint is not None))
        log_start(self)  # hparams, the model graph
        same_random = (
            eager_random_numbers(s.compile)
            if s.compile is not None and self._check_compile
            else contextlib.nullcontext()
        )
        trace = (
            StepTrace(
                trace_path(self.run.root, self.cluster.world), self.profile, self.device
            )
            if self.profile is not None
            else contextlib.nullcontext()
        )
        try:
            with StopSignals() as signals, same_random, trace:
                stop = self.cluster.stop_vote(signals)
                self._train(stop, trace if isinstance(trace, StepTrace) else None)
            if isinstance(trace, StepTrace) and trace.written:
                self.log.message(f"profile: wrote {trace.path}")
        except compile_errors() as exc:
            if s.compile is None:
                raise
            raise compile_failure(exc, s.compile) from exc
        finally:
            self.log.close()
        return self._result(stop)

    def _train(self, stop: StopSignals, trace: StepTrace | None) -> None:
        """The loop: one optimizer step at a time, until the planned step or a stop."""
        t, plan, position = self.settings.train, self.plan, self.position
        samples_per_step = self.samples_per_step  # in all processes
        start_step = step = position.step
        epoch = position.epoch + 1  # 1-based, as shown
        batches = None
        self._train_mode()
        if plan.max_steps == 0 and self._saved_step is None:
            self._no_steps()  # steps: 0, a new run: validate once and checkpoint
        while (
            position.step < plan.max_steps
            and not stop.requested
            and self._stop_reason is None
        ):
            if batches is None:  # a new epoch, or the rest of the one resumed
                if t.unfreeze and unfreeze_at(self.network, t, position.epoch + 1):
                    self._unfrozen()
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
            if trace is not None:
                trace.step()

            step = position.step
            self.callbacks.step(self, step, loss)
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
            improved = ranked = False
            if self.val_data is not None and (
                epoch_end or finished or _every(step, t.val_every)
            ):
                improved, ranked = validate(self, epoch, step)
            if epoch_end:
                self._epoch_schedule()
                self.kept.epoch_end(position.epoch, step)
            # Checkpoint at each epoch end, every checkpoint_every steps, on a new
            # best (or one of the k best kept), at the end, and when asked to stop.
            if (
                epoch_end
                or finished
                or improved
                or ranked
                or stop.requested
                or self._stop_reason is not None
                or _every(step, t.checkpoint_every)
            ):
                save(self, improved)

        if batches is not None:
            batches.close()
        if self.window.steps and step > start_step:  # steps since the last log line
            self.log.train(self._read_window(epoch, step))
        if stop.requested:
            if self._saved_step != position.step:  # asked before the first step
                save(self, improved=False)
            self.log.message(
                f"stopped by {stop.requested} at step {position.step}: saved "
                f"{self.run.last}; continue with --resume"
            )
        elif self._stop_reason is not None:
            self.log.message(f"stopped at step {position.step}: {self._stop_reason}")
        elif step == start_step and plan.max_steps > 0:
            self.log.message(f"the run is at step {step} already: nothing to do")

    def _no_steps(self) -> None:
        """``steps: 0``: the model as built (or as its init rules load it),
        validated once and saved as step 0, so it can be evaluated or exported."""
        improved = False
        if self.val_data is not None:
            improved, _ = validate(self, 0, 0)
        save(self, improved)
        self.log.message(f"steps: 0: no training; saved {self.run.last}")

    def _result(self, stop: StopSignals) -> FitResult:
        if not stop.requested and self.cluster.main:
            done = f"done at step {self.position.step}"
            if self.best is not None:
                done += (
                    f"; best {self.best['monitor']} {self.best['value']:.4g} "
                    f"at step {self.best['step']}"
                )
            print(f"{done}; checkpoints in {self.run.checkpoints}", flush=True)
        status = "completed"
        if stop.requested:
            status = "interrupted"
        elif self._stop_reason is not None:
            status = "stopped"
        return FitResult(
            status,
            self.position.step,
            self.position.epoch,
            self.run.root,
            self.best,
            self.last_validation,
            stop.requested or self._stop_reason,
        )

    # -- one step --------------------------------------------------------------------

    def _train_step(self, group: list[Batch]) -> tuple[Tensor, Tensor | None]:
        """Forward, backward and update over `accumulate` batches; no host sync.
        Returns the loss and (with several terms) each term, on the device."""
        t = self.settings.train
        reference = eager_step(self, group) if self._check_compile else None
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
            check_compiled_step(self, reference, torch.stack(losses).mean())
        clip_and_measure(self)
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
        values = [term(outputs, batch) for term in losses]
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
        return (
            self.scheduler is not None
            and schedule_interval(self.settings.train) == interval
            and not isinstance(self.scheduler, ReduceLROnPlateau)
        )

    def _epoch_schedule(self) -> None:
        if self._steps_per("epoch"):
            self.scheduler.step()

    def _read_window(self, epoch: int, step: int) -> dict[str, Any]:
        self.window.check_finite(self.run, self._saved_step)
        record = self.window.read(
            step=step,
            epoch=epoch,
            lr=self.optimizer.param_groups[0]["lr"],
            names=[term.output for term in self.settings.losses],
        )
        if self._grad_norm is not None:
            norm = self._grad_norm
            full = getattr(norm, "full_tensor", None)  # FSDP: a DTensor
            record["grad_norm"] = float(full() if full is not None else norm)
        return record

    # -- modes, wrappers -------------------------------------------------------------

    def _train_mode(self) -> None:
        """The model in train mode; with ``frozen_bn: eval`` its frozen BatchNorm
        layers stay in eval mode (freezing.py)."""
        self.model.train()
        if self.settings.train.frozen_bn == "eval":
            keep_frozen_norms_eval(self.network)

    def _unfrozen(self) -> None:
        """Parameters were unfrozen: under DDP the model is wrapped anew."""
        if self.cluster.distributed:
            rewrap(self)
        self._train_mode()

    # -- validation ------------------------------------------------------------------


def _every(step: int, interval: int | None) -> bool:
    return interval is not None and step % interval == 0
