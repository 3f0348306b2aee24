"""`nnspec train` against a minimal hand-written loop, and against Lightning's Trainer.

The same work everywhere: the model of bench/specs (an MLP 64-128-10 of the spec
below, built by nnspec with seed 0), 16,384 in-memory samples, batches of 64
reshuffled each epoch, AdamW (lr 1e-3), cross-entropy, float32, CPU. The loop's
framework cost is what is measured, so the model is small: a step takes about half a
millisecond.

- nnspec: ``nnspec.runtime.Trainer(...).fit()``, which is all that ``nnspec train``
  runs; its steps/s come from its own throughput windows (``log_every`` steps each;
  checkpoints, written at each epoch's end, do not count there).
- hand-written: index a batch, forward, loss, backward, step, zero the gradients; the
  loss is read back every ``log_every`` steps, as nnspec does.
- Lightning (eager only): a LightningModule around the same model; a DataLoader that
  hands out whole batches (a batch sampler over a TensorDataset); no logger,
  checkpointing, progress bar or model summary.

Each window is clocked by the CPU time of the one thread all of them train on (torch
set to one thread); the first two windows of a run (warm-up, compilation) are left
out, and the run's figure is the median of the rest. Runs alternate in rounds.

    python -m bench.train_loop [--quick]
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import nnspec
import nnspec.runtime.window as nnspec_window
from nnspec.runtime import Trainer

from .common import ROOT, interleave, median, ratio_spread, section_main, table

__all__ = ["SPEC", "run"]

TARGET = 0.97
SAMPLES = 16_384
BATCH = 64
WINDOW = 50
SKIP = 2  # windows left out at the start of a run
SPEC = f"""\
nnspec: 1
name: Mlp
inputs: {{x: [64]}}
layers:
  - {{op: Linear, name: fc1, out_features: 128}}
  - ReLU
  - {{op: Linear, name: fc2, out_features: 10}}
train:
  data: {{source: {{synthetic: {SAMPLES}}}, batch_size: {BATCH}}}
  loss: {{fc2: {{op: CrossEntropyLoss, target: label}}}}
  optimizer: {{op: AdamW, lr: 0.001}}
  log_every: {WINDOW}
"""


@contextlib.contextmanager
def _trainer_on_cpu_clock() -> Iterator[None]:
    """The Trainer's throughput windows clocked by this thread's CPU time."""
    clock = types.SimpleNamespace(perf_counter=time.thread_time)
    original = nnspec_window.time
    nnspec_window.time = clock  # type: ignore[assignment]
    try:
        yield
    finally:
        nnspec_window.time = original


def nnspec_steps_per_s(spec: Path, out: Path, steps: int, compile: bool) -> float:
    overrides: dict[str, Any] = {"steps": steps, "compile": compile}
    with _trainer_on_cpu_clock(), contextlib.redirect_stdout(io.StringIO()):
        Trainer(spec, out, overrides=overrides, progress=False, overwrite=True).fit()
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r]
    return median(rates[SKIP:]) / BATCH


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, 64, generator=generator)
    y = torch.randint(0, 10, (SAMPLES,), generator=generator)
    return x, y


def hand_steps_per_s(spec: Path, steps: int, compile: bool) -> float:
    torch.manual_seed(0)
    model = nnspec.load(spec).build()
    if compile:
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    x, y = _data()
    per_epoch = SAMPLES // BATCH
    rates = []
    begin = time.thread_time()
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(SAMPLES)
        idx = order[(step % per_epoch) * BATCH : (step % per_epoch + 1) * BATCH]
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % WINDOW == 0:
            loss.item()  # the read-back nnspec does once a window
            now = time.thread_time()
            rates.append(WINDOW / (now - begin))
            begin = now
    return median(rates[SKIP:])


def lightning_available() -> bool:
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        return False
    return True


def lightning_steps_per_s(spec: Path, steps: int) -> float:
    import pytorch_lightning as pl
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = nnspec.load(spec).build()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return self.loss_fn(self.model(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=0.001)

    class Windows(pl.Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []
            self.begin = 0.0

        def on_train_start(self, *args: Any) -> None:
            self.begin = time.thread_time()

        def on_train_batch_end(
            self, trainer: Any, module: Any, outputs: Any, batch: Any, index: int
        ) -> None:
            if trainer.global_step % WINDOW == 0:
                now = time.thread_time()
                self.rates.append(WINDOW / (now - self.begin))
                self.begin = now

    dataset = TensorDataset(*_data())
    batches = BatchSampler(RandomSampler(dataset), BATCH, drop_last=True)
    loader = DataLoader(dataset, sampler=batches, batch_size=None)
    windows = Windows()
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[windows],
    )
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(Module(), loader)
    return median(windows.rates[SKIP:])


def _digits_line(tmp: Path) -> str:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = Trainer(
            ROOT / "examples" / "digits.yaml", tmp / "digits", progress=False
        ).fit()
    seconds = time.perf_counter() - start
    best = result.best or {}
    return (
        f"- examples/digits.yaml as written: {seconds:.1f} s wall for {result.step} "
        f"steps, best {best.get('monitor')} {best.get('value', float('nan')):.4f} "
        f"at step {best.get('step')}"
    )


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    rounds, compiled_rounds = (3, 1) if quick else (7, 3)
    steps = 600
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / "mlp.yaml"
        spec.write_text(SPEC)
        out = tmp / "run"

        def contenders(compile: bool) -> dict[str, Callable[[], float]]:
            found: dict[str, Callable[[], float]] = {
                "nnspec": lambda: nnspec_steps_per_s(spec, out, steps, compile),
                "hand": lambda: hand_steps_per_s(spec, steps, compile),
            }
            if not compile and lightning_available():
                found["lightning"] = lambda: lightning_steps_per_s(spec, steps)
            return found

        for compile, n in ((False, rounds), (True, compiled_rounds)):
            mode = "torch.compile" if compile else "eager"
            result = interleave(contenders(compile), n)
            ratios = result.ratios("nnspec", "hand")
            figures[f"train {mode}"] = median(ratios)
            rows.append(
                [
                    mode,
                    n,
                    result.median("hand"),
                    result.median("nnspec"),
                    ratio_spread(ratios),
                    result.median("lightning") if "lightning" in result.samples else "",
                    ratio_spread(result.ratios("nnspec", "lightning"))
                    if "lightning" in result.samples
                    else "",
                ]
            )
            if "lightning" in result.samples:
                figures["train over lightning"] = median(
                    result.ratios("nnspec", "lightning")
                )
        digits = _digits_line(tmp) if not quick else None
    worst = min(figures["train eager"], figures["train torch.compile"])
    lines = [
        f"Steps per CPU second of the training thread, {steps} steps per run, windows "
        f"of {WINDOW} steps, the first {SKIP} left out; rounds alternate the loops. "
        "This is the bare step: set-up, validation, checkpoints and start-up are "
        "not counted (the next section times the whole run a user waits for).",
        "",
        *table(
            [
                "mode",
                "rounds",
                "hand-written steps/s",
                "nnspec steps/s",
                "nnspec / hand-written",
                "Lightning steps/s",
                "nnspec / Lightning",
            ],
            rows,
        ),
        "",
        f"- nnspec over the hand-written loop, worst mode: {worst:.3f} "
        f"(target >= {TARGET}): " + ("met" if worst >= TARGET else "not met"),
    ]
    if "train over lightning" in figures:
        ahead = figures["train over lightning"]
        lines.append(
            f"- nnspec over Lightning, bare step (steps/s): {ahead:.2f} (target > 1): "
            + ("met" if ahead > 1 else "not met")
        )
    else:
        lines.append(
            "- Lightning is not installed (`pip install -e .[bench]`): not compared"
        )
    if digits:
        lines.append(digits)
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("train_loop", run, argv)


if __name__ == "__main__":
    sys.exit(main())
