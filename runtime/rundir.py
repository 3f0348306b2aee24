"""The run directory: what a run writes, and where.

::

    runs/<spec stem>/
        spec.yaml                 the spec text as read
        train.json                the train settings in effect (--set applied), params
        model.py                  the generated model source
        metrics.jsonl             one JSON object per logged step and per validation
        events.out.tfevents.*     TensorBoard scalars
        checkpoints/last.pt       the latest state (resume from here)
        checkpoints/best.pt       the state with the best monitored validation value

A sharded run (strategy fsdp on several processes) writes directories instead:
``checkpoints/last.dcp/`` and ``checkpoints/best.dcp/`` (torch.distributed.checkpoint
shards and a ``meta.pt``); ``nnspec consolidate`` turns one into a ``.pt`` file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import recover_directory, remove_partial
from .errors import TrainError

__all__ = ["RunDir"]


@dataclass
class RunDir:
    """Paths of one run's files, and the few operations on them."""

    root: Path
    sharded: bool = False  # checkpoints are directories of shards (FSDP)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / ("last.dcp" if self.sharded else "last.pt")

    @property
    def best(self) -> Path:
        return self.checkpoints / ("best.dcp" if self.sharded else "best.pt")

    def _checkpoint_paths(self) -> list[Path]:
        """Checkpoints of both kinds, files and sharded directories."""
        return [
            self.checkpoints / f"{n}.{k}"
            for n in ("last", "best")
            for k in ("pt", "dcp")
        ]

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def event_files(self) -> list[Path]:
        return sorted(self.root.glob("events.out.tfevents.*"))

    def holds_run(self) -> bool:
        return (
            any(p.exists() for p in self._checkpoint_paths())
            or self.metrics.exists()
            or bool(self.event_files())
        )

    def prepare(self, *, resume: bool, overwrite: bool) -> None:
        """Create the directory; refuse to mix a new run into an old one's files."""
        if self.holds_run() and not resume:
            if not overwrite:
                where = f" (last checkpoint: {self.last})" if self.last.exists() else ""
                taken = f"{self.root} already holds a run{where}"
                raise TrainError(
                    f"{taken}; continue it with resume=True, start over with "
                    "overwrite=True, or pick another out_dir",
                    command_line=f"{taken}; continue it with --resume, start over "
                    "with --overwrite, or pick another --out",
                )
            self.clear()
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        remove_partial(self.checkpoints)
        remove_partial(self.root)
        for path in self._checkpoint_paths():
            recover_directory(path)

    def clear(self) -> None:
        """Remove the files a run writes (and nothing else)."""
        for path in [self.metrics, *self._checkpoint_paths(), *self.event_files()]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def write_inputs(
        self, spec_text: str, source: str, settings: dict[str, Any]
    ) -> None:
        """The spec as read, the generated source and the settings in effect."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "spec.yaml").write_text(spec_text, encoding="utf-8")
        (self.root / "model.py").write_text(source, encoding="utf-8")
        info = {**settings, "torch_version": torch.__version__}
        text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
        (self.root / "train.json").write_text(text, encoding="utf-8")

    def keep_metrics_until(self, step: int) -> None:
        """Drop the records after ``step`` (written after the checkpoint a resumed run
        starts from), and a line cut short by a kill. Atomic, like checkpoints."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        partial = self.metrics.with_name(f".{self.metrics.name}.{os.getpid()}.partial")
        partial.write_text("".join(kept), encoding="utf-8")
        os.replace(partial, self.metrics)
