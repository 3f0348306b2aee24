"""What a run reports: metrics.jsonl, metrics.csv, TensorBoard, and the terminal.

On a terminal a progress bar shows the epoch, step, loss and samples/s; otherwise
(a log file, CI) the same appears as plain lines every ``log_every`` steps.

metrics.csv holds the same records as metrics.jsonl, one row each, under a header
of every key seen so far: a record with a new key (the first validation's) rewrites
the file with the wider header, the earlier rows left empty in the new columns. On
resume it is written afresh from metrics.jsonl (cut back to the checkpoint's step).

TensorBoard gets the scalars, and optionally the HParams of the run (the params
and train settings, with the best monitored value as ``hparams/best_<monitor>``)
and the model's graph.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from .errors import TrainError
from .rundir import RunDir

__all__ = [
    "CsvLog",
    "RunLog",
    "SilentLog",
    "flat_hparams",
    "format_record",
    "require_training_extras",
]

# What training needs beyond the core install (the `train` extra), by import name.
TRAINING_EXTRAS = {"tensorboard": "TensorBoard logs", "tqdm": "the progress bar"}


def require_training_extras() -> None:
    """Raise TrainError naming the install command when a training extra is missing.

    The core install only compiles and builds models; checked before a run starts,
    so nothing is created when the answer is no.
    """
    missing = [
        f"{name} ({what})"
        for name, what in TRAINING_EXTRAS.items()
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise TrainError(
            f"training needs {', '.join(missing)}, which the core install leaves out: "
            "pip install 'nnspec[train]'"
        )


def format_record(record: dict[str, Any]) -> str:
    """A record as one readable line: ``step 50  loss 0.4123  lr 1e-03 ...``."""
    parts = []
    for key, value in record.items():
        if key in ("epoch", "step"):
            continue
        if key == "samples_per_s":
            parts.append(f"{value:,.0f} samples/s")
        elif key == "lr":
            parts.append(f"lr {value:.3g}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


class RunLog:
    """Writes records to metrics.jsonl and TensorBoard, and shows progress."""

    def __init__(
        self,
        run: RunDir,
        *,
        start_step: int,
        total_steps: int,
        epochs: int,
        progress: bool,
        csv: bool = False,
    ) -> None:
        self.epochs = epochs
        self.total_steps = total_steps
        # Line-buffered: each record reaches the file as it is logged.
        self.file = open(run.metrics, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.csv = CsvLog(run.root / "metrics.csv", run.metrics) if csv else None
        # purge_step hides the events a killed run wrote after its last checkpoint.
        self._writer = _Opening(
            partial(_summary_writer, run, start_step + 1 if start_step else None)
        )
        #: What waits for the writer (the HParams summary), written when it is open.
        self._pending: list[Callable[[Any], None]] = []
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps,
                initial=start_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    @property
    def writer(self) -> Any:
        """The TensorBoard writer (waited for, the first time, while it opens)."""
        writer = self._writer.get()
        while self._pending:
            self._pending.pop(0)(writer)
        return writer

    def epoch(self, epoch: int) -> None:
        """A new epoch (1-based) begins."""
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)

    def advance(self) -> None:
        """One optimizer step done (no host sync: the bar only counts)."""
        if self.bar is not None:
            self.bar.update(1)

    def train(self, record: dict[str, Any]) -> None:
        """A logged step: step, epoch, loss, lr, samples_per_s, loss_<output>..."""
        self._write(record)
        step = record["step"]
        for key, value in record.items():
            if key not in ("step", "epoch"):
                self.writer.add_scalar(f"train/{key}", value, step)
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                samples_s=f"{record['samples_per_s']:,.0f}",
                refresh=False,
            )
        else:
            self.message(self._prefix(record) + format_record(record))

    def val(self, record: dict[str, Any], *, best: bool) -> None:
        """A validation: step, epoch, val_loss, val_<metric>..."""
        self._write(record)
        for key, value in record.items():
            if key.startswith("val_"):
                self.writer.add_scalar(f"val/{key[4:]}", value, record["step"])
        self.message(
            self._prefix(record) + format_record(record) + ("  (best)" if best else "")
        )

    def best(self, monitor: str, value: float, step: int) -> None:
        """A new best monitored value: the HParams tab's metric."""
        self.writer.add_scalar(f"hparams/best_{monitor}", value, step)

    def hparams(self, values: Mapping[str, Any], monitor: str) -> None:
        """The run's settings in TensorBoard's HParams tab, in this run's own event
        file, against the best value of ``monitor``. It is written with the first
        record that needs the writer: the start of a run does not wait for it."""
        self._pending.append(partial(_write_hparams, dict(values), monitor))

    def graph(self, model: Any, inputs: tuple[Any, ...]) -> None:
        """The model's graph (a trace); a model that cannot be traced is skipped
        with a note, and the run goes on."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.writer.add_graph(model, inputs, use_strict_trace=False)
        except Exception as exc:  # tracing fails in many ways; none stop the run
            lines = str(exc).strip().splitlines()
            reason = lines[0] if lines else type(exc).__name__
            self.message(
                f"note: the model graph is not logged: its trace failed ({reason})"
            )

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, flush=True)

    def flush(self) -> None:
        """Make everything logged so far durable (called before each checkpoint)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.csv is not None:
            self.csv.flush()
        self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.writer.close()
        self.file.close()
        if self.csv is not None:
            self.csv.close()

    def _prefix(self, record: dict[str, Any]) -> str:
        width = len(str(self.total_steps))
        return (
            f"epoch {record['epoch']}/{self.epochs}  "
            f"step {record['step']:>{width}}/{self.total_steps}  "
        )

    def _write(self, record: dict[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        self.file.write(json.dumps(clean) + "\n")
        if self.csv is not None:
            self.csv.write(clean)


class CsvLog:
    """metrics.csv: the records as rows, under the header of the keys seen so far."""

    def __init__(self, path: Path, jsonl: Path) -> None:
        self.path = path
        self.columns: list[str] = []
        rows = list(_jsonl_records(jsonl))  # what the run logged before a resume
        for row in rows:
            self._widen(row)
        self._rewrite(rows)

    def write(self, record: Mapping[str, Any]) -> None:
        if any(key not in self.columns for key in record):
            self._widen(record)
            self.file.close()
            self._rewrite(list(self._rows()))
        self.writer.writerow(record)

    def _widen(self, record: Mapping[str, Any]) -> None:
        self.columns += [key for key in record if key not in self.columns]

    def _rows(self) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Write the header and ``rows`` to a temporary file, then rename it over
        metrics.csv; append from there on."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        with open(temporary, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, self.columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, self.path)
        self.file = open(self.path, "a", encoding="utf-8", newline="", buffering=1)  # noqa: SIM115
        self.writer = csv.DictWriter(self.file, self.columns, restval="")

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record


def flat_hparams(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``a.b: value`` pairs of the types HParams takes (numbers,
    strings, booleans); a list or None is shown as text."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def _write_hparams(values: dict[str, Any], monitor: str, writer: Any) -> None:
    from torch.utils.tensorboard.summary import hparams

    file_writer = writer.file_writer
    assert file_writer is not None  # open until close()
    for summary in hparams(values, {f"hparams/best_{monitor}": 0.0}):
        file_writer.add_summary(summary)


def _summary_writer(run: RunDir, purge_step: int | None) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run.root), purge_step=purge_step)


class _Opening:
    """A value made on a thread of its own, from the start of a run: importing
    TensorBoard takes a tenth of a second or more, which overlaps the first
    steps instead of delaying them. ``get`` waits for the value, and raises what
    making it raised."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._make, args=(make,), name="nnspec-tensorboard", daemon=True
        )
        _OPENINGS.add(self)
        self._thread.start()

    def _make(self, make: Callable[[], Any]) -> None:
        try:
            self._value = make()
        except BaseException as exc:  # raised in the thread that waits for it
            self._error = exc

    def get(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


_OPENINGS: weakref.WeakSet[_Opening] = weakref.WeakSet()


def _finish_openings() -> None:
    """Before a fork (data loader workers): no import half done in another thread,
    whose module locks the child would inherit held."""
    for opening in list(_OPENINGS):
        if opening._thread is not threading.current_thread():
            opening._thread.join()


if hasattr(os, "register_at_fork"):  # not on Windows, which spawns
    os.register_at_fork(before=_finish_openings)


class SilentLog:
    """The log of a rank other than 0 in a run of several processes: rank 0 alone
    writes the files and the terminal lines."""

    def epoch(self, epoch: int) -> None:
        pass

    def advance(self) -> None:
        pass

    def train(self, record: dict[str, Any]) -> None:
        pass

    def val(self, record: dict[str, Any], *, best: bool) -> None:
        pass

    def best(self, monitor: str, value: float, step: int) -> None:
        pass

    def hparams(self, values: Mapping[str, Any], monitor: str) -> None:
        pass

    def graph(self, model: Any, inputs: tuple[Any, ...]) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
