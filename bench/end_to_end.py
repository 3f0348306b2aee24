"""What a user waits for: examples/digits.yaml trained end to end, by nnspec, by a
hand-written script and by Lightning, doing the same work.

The work is the run examples/digits.yaml describes: 300 steps (12 epochs of 25),
the loss logged every 25 steps, a validation (loss and accuracy over 180 samples)
and a checkpoint at each epoch's end, TensorBoard on. bench/hand_digits.py writes
it by hand (its docstring lists what it does); Lightning runs the same network
and schedule as a LightningModule, with a TensorBoard logger, a learning-rate
monitor and a ModelCheckpoint (last and best), validating every epoch.

Two ways of running it:

- in this process, imports done: ``Trainer(spec).fit()`` (which loads and
  compiles the spec too), the hand-written ``train()``, Lightning's ``fit()``; the
  wall time of each call, and the CPU time of the process over it (every thread:
  TensorBoard writes from a thread of its own);
- as a command, each a new process: ``nnspec train examples/digits.yaml``, the
  hand-written script, and the least a first training step takes in torch
  (import torch, one optimizer, one step). bench/first_step.py notes when each
  process's first optimizer step begins: the start-up is the time from the
  process's start to that step, and nnspec's fixed start-up cost is its start-up
  minus the least one's (torch's import and the torch._dynamo import that an
  optimizer's first construction makes, paid by every training script).

Contenders alternate in rounds; figures are medians, ratios are per round (with
the interquartile range). torch runs on one thread everywhere.

    python -m bench.end_to_end [--quick]
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnspec.runtime import Trainer

from . import hand_digits
from .common import ROOT, interleave, median, ratio_spread, section_main, table
from .digits_net import digits_net
from .first_step import read_stamp

__all__ = ["FIT_TARGET", "STARTUP_TARGET", "run"]

DIGITS = ROOT / "examples" / "digits.yaml"
FIT_TARGET = 1.10  # Trainer.fit() over the hand-written loop, wall time
STARTUP_TARGET = 0.3  # seconds of start-up beyond torch's
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _timed(work: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        work()
    return time.perf_counter() - wall, time.process_time() - cpu


def nnspec_fit(out: Path) -> tuple[float, float]:
    return _timed(lambda: Trainer(DIGITS, out, progress=False, overwrite=True).fit())


def hand_fit(out: Path) -> tuple[float, float]:
    return _timed(lambda: hand_digits.train(out))


def lightning_available() -> bool:
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        return False
    return True


def lightning_fit(out: Path) -> tuple[float, float]:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch.utils.data import (
        BatchSampler,
        DataLoader,
        RandomSampler,
        SequentialSampler,
        TensorDataset,
    )

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    batch = hand_digits.BATCH

    def work() -> None:
        torch.manual_seed(0)
        x, y, val_x, val_y = hand_digits.split_data(0)
        per_epoch = len(x) // batch

        class Digits(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.model = digits_net()
                self.loss_fn = nn.CrossEntropyLoss()

            def training_step(self, data: Any, index: int) -> torch.Tensor:
                images, labels = data
                loss = self.loss_fn(self.model(images), labels)
                self.log("loss", loss)
                return loss

            def validation_step(self, data: Any, index: int) -> None:
                images, labels = data
                out = self.model(images)
                accuracy = (out.argmax(dim=1) == labels).float().mean()
                self.log("val_loss", self.loss_fn(out, labels), batch_size=len(labels))
                self.log("val_accuracy", accuracy, batch_size=len(labels))

            def configure_optimizers(self) -> Any:
                optimizer = torch.optim.AdamW(
                    self.parameters(), lr=0.002, weight_decay=0.01
                )
                schedule = torch.optim.lr_scheduler.OneCycleLR(
                    optimizer,
                    max_lr=0.004,
                    total_steps=hand_digits.EPOCHS * per_epoch,
                )
                return {
                    "optimizer": optimizer,
                    "lr_scheduler": {"scheduler": schedule, "interval": "step"},
                }

        # Whole batches from the dataset at once (no per-sample collation), as the
        # other two index their tensors.
        train_set, val_set = TensorDataset(x, y), TensorDataset(val_x, val_y)
        train_batches = BatchSampler(RandomSampler(train_set), batch, drop_last=True)
        val_batches = BatchSampler(SequentialSampler(val_set), batch, drop_last=False)
        trainer = pl.Trainer(
            max_epochs=hand_digits.EPOCHS,
            accelerator="cpu",
            devices=1,
            logger=TensorBoardLogger(str(out), name="", version=""),
            callbacks=[
                ModelCheckpoint(
                    dirpath=out / "checkpoints",
                    monitor="val_accuracy",
                    mode="max",
                    save_last=True,
                ),
                LearningRateMonitor(logging_interval="step"),
            ],
            log_every_n_steps=hand_digits.LOG_EVERY,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(
            Digits(),
            DataLoader(train_set, sampler=train_batches, batch_size=None),
            DataLoader(val_set, sampler=val_batches, batch_size=None),
        )

    shutil.rmtree(out, ignore_errors=True)  # a directory of this benchmark's own
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's notes on its own deprecations
        return _timed(work)


def process(stamp: Path, *command: str) -> dict[str, float]:
    """Run ``python -m bench.first_step STAMP COMMAND``: seconds from its start to
    its first step (wall, CPU) and to its end (wall, CPU)."""
    stamp.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.first_step", str(stamp), *command],
        cwd=ROOT,
        env={**os.environ, **ONE_THREAD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not stamp.exists():
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    wall, cpu = read_stamp(stamp)
    total_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "first_wall": wall - start,
        "first_cpu": cpu,
        "wall": end - start,
        "cpu": total_cpu,
    }


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    rounds = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cpu: dict[str, list[float]] = {}

        def in_process(
            name: str, fit: Callable[[Path], tuple[float, float]]
        ) -> Callable[[], float]:
            def one() -> float:
                wall, seconds = fit(tmp / name)
                cpu.setdefault(name, []).append(seconds)
                return wall

            return one

        fits = {"hand": in_process("hand", hand_fit)}
        fits["nnspec"] = in_process("nnspec", nnspec_fit)
        if lightning_available():
            fits["lightning"] = in_process("lightning", lightning_fit)
        fitted = interleave(fits, rounds)

        runs: dict[str, list[dict[str, float]]] = {}
        commands = {
            "torch": ("torch",),
            "hand": ("hand", str(tmp / "hand-script")),
            "nnspec": (
                "nnspec",
                "train",
                str(DIGITS),
                "--out",
                str(tmp / "nnspec-command"),
                "--overwrite",
            ),
        }

        def as_process(name: str) -> Callable[[], float]:
            def one() -> float:
                found = process(tmp / f"{name}.stamp", *commands[name])
                runs.setdefault(name, []).append(found)
                return found["wall"]

            return one

        interleave({name: as_process(name) for name in commands}, rounds)
    return _report(fitted, cpu, runs, rounds)


def _report(
    fitted: Any,
    cpu: dict[str, list[float]],
    runs: dict[str, list[dict[str, float]]],
    rounds: int,
) -> tuple[list[str], dict[str, float]]:
    figures: dict[str, float] = {}
    labels = {
        "hand": "hand-written loop (bench/hand_digits.py)",
        "nnspec": "nnspec `Trainer(spec).fit()`",
        "lightning": "Lightning `Trainer.fit()`",
    }
    fit_rows = []
    for name in fitted.samples:
        walls = fitted.ratios(name, "hand")
        cpus = [a / b for a, b in zip(cpu[name], cpu["hand"])]
        fit_rows.append(
            [
                labels[name],
                fitted.median(name),
                ratio_spread(walls) if name != "hand" else "1",
                median(cpu[name]),
                ratio_spread(cpus) if name != "hand" else "1",
            ]
        )
    figures["fit over hand"] = median(fitted.ratios("nnspec", "hand"))
    figures["fit cpu over hand"] = median(
        [a / b for a, b in zip(cpu["nnspec"], cpu["hand"])]
    )
    if "lightning" in fitted.samples:
        figures["fit lightning over hand"] = median(fitted.ratios("lightning", "hand"))

    def per_round(name: str, key: str) -> list[float]:
        return [r[key] for r in runs[name]]

    def beyond_torch(name: str, key: str) -> list[float]:
        return [a - b for a, b in zip(per_round(name, key), per_round("torch", key))]

    names = {
        "torch": "the least: import torch, build the network, one step",
        "hand": "hand-written script (`python -m bench.hand_digits`)",
        "nnspec": "`nnspec train examples/digits.yaml`",
    }
    command_rows = []
    for name in runs:
        extra_wall = median(beyond_torch(name, "first_wall"))
        extra_cpu = median(beyond_torch(name, "first_cpu"))
        walls = [
            a / b for a, b in zip(per_round(name, "wall"), per_round("hand", "wall"))
        ]
        cpus = [a / b for a, b in zip(per_round(name, "cpu"), per_round("hand", "cpu"))]
        command_rows.append(
            [
                names[name],
                median(per_round(name, "first_wall")),
                extra_wall if name != "torch" else "",
                extra_cpu if name != "torch" else "",
                median(per_round(name, "wall")),
                ratio_spread(walls) if name not in ("hand", "torch") else "",
                median(per_round(name, "cpu")),
                ratio_spread(cpus) if name not in ("hand", "torch") else "",
            ]
        )
    figures["startup wall"] = median(beyond_torch("nnspec", "first_wall"))
    figures["startup cpu"] = median(beyond_torch("nnspec", "first_cpu"))
    figures["command over hand"] = median(
        [a / b for a, b in zip(per_round("nnspec", "wall"), per_round("hand", "wall"))]
    )
    fit = figures["fit over hand"]
    startup = figures["startup cpu"]
    lines = [
        f"examples/digits.yaml as written (300 steps; a validation, a checkpoint and "
        f"TensorBoard scalars every epoch), {rounds} interleaved rounds, torch on one "
        "thread. These are the times a user waits for, set-up, validation, logging "
        "and checkpoints included; the training-loop section above measures the bare "
        "step alone.",
        "",
        "In one process, imports done (wall seconds of the call, and the CPU seconds "
        "of the process over it):",
        "",
        *table(
            ["run", "wall (s)", "/ hand-written", "CPU (s)", "CPU / hand-written"],
            fit_rows,
        ),
        "",
        "As a command, a new process each (start-up: from the process's start to "
        "its first optimizer step; beyond torch's: minus the least one's, paired by "
        "round):",
        "",
        *table(
            [
                "command",
                "start-up (s)",
                "beyond torch's, wall (s)",
                "beyond torch's, CPU (s)",
                "whole run, wall (s)",
                "/ hand-written script",
                "whole run, CPU (s)",
                "/ hand-written script, CPU",
            ],
            command_rows,
        ),
        "",
        f"- `Trainer.fit()` over the hand-written loop: {fit:.3f} wall, "
        f"{figures['fit cpu over hand']:.3f} CPU (target <= {FIT_TARGET}, by the wall "
        "clock: it counts the waits for the disk too): "
        + ("met" if fit <= FIT_TARGET else "not met"),
        f"- `nnspec train` start-up beyond torch's: {startup:.3f} s CPU, "
        f"{figures['startup wall']:.3f} s wall (target <= {STARTUP_TARGET} s, by the "
        "CPU time: the wall clock of a new process on a shared machine mostly "
        "measures its wait for a core): "
        + ("met" if startup <= STARTUP_TARGET else "not met"),
    ]
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("end_to_end", run, argv)


if __name__ == "__main__":
    sys.exit(main())
