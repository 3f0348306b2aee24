"""Checkpoints kept besides last.pt and best.pt (``checkpoints:`` of the train
section): the k best by the monitored value, and one per epoch end.

::

    checkpoints/best-step<N>.pt   with keep_best: k > 1, each of the k best
    checkpoints/epoch-<N>.pt      with every_epoch: true, the end of epoch N
                                  (the newest keep_last of them)

(``.dcp`` directories in a sharded run.) Each is a copy of last.pt made right after
it is written, so each is as complete and atomic as last.pt. A file that falls out
of the kept set is deleted before the checkpoint that drops it is written, and only
by its name: a run killed anywhere keeps every file its last.pt lists, or on resume
makes the missing copy again from last.pt.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.train import CheckpointsSpec
from .checkpoint import KEPT_NAME, copy_checkpoint, copy_directory
from .rundir import RunDir

__all__ = ["KEPT_NAME", "Retention"]


@dataclass
class Retention:
    """Which extra checkpoints exist, and the copies and deletions that keep it so."""

    run: RunDir
    spec: CheckpointsSpec
    higher_is_better: bool
    best: list[tuple[int, float]] = field(default_factory=list)  # best first
    epochs: list[tuple[int, int]] = field(default_factory=list)  # (epoch, step)
    _copies: list[Path] = field(default_factory=list)  # due after the next save
    _removals: list[Path] = field(default_factory=list)  # due before it

    @property
    def _suffix(self) -> str:
        return ".dcp" if self.run.sharded else ".pt"

    def best_path(self, step: int) -> Path:
        return self.run.checkpoints / f"best-step{step}{self._suffix}"

    def epoch_path(self, epoch: int) -> Path:
        return self.run.checkpoints / f"epoch-{epoch}{self._suffix}"

    def paths(self) -> list[Path]:
        """The kept checkpoints, best first, then by epoch."""
        return [self.best_path(s) for s, _ in self.best] + [
            self.epoch_path(e) for e, _ in self.epochs
        ]

    def offer(self, step: int, value: float) -> bool:
        """A validation's value: True if it joins the k best (a checkpoint of this
        step is then due). Called on every process; only rank 0 touches files."""
        k = self.spec.keep_best
        if k <= 1:
            return False
        ranked = sorted(
            [*self.best, (step, value)],
            key=lambda sv: -sv[1] if self.higher_is_better else sv[1],
        )
        kept = ranked[:k]
        if (step, value) not in kept:
            return False
        self._drop([self.best_path(s) for s, _ in ranked[k:]])
        self.best = kept
        self._copies.append(self.best_path(step))
        return True

    def epoch_end(self, epoch: int, step: int) -> None:
        """Epoch ``epoch`` (1-based) ended at ``step``: keep its checkpoint."""
        if not self.spec.every_epoch:
            return
        self.epochs.append((epoch, step))
        n = self.spec.keep_last
        if n is not None and len(self.epochs) > n:
            dropped, self.epochs = self.epochs[:-n], self.epochs[-n:]
            self._drop([self.epoch_path(e) for e, _ in dropped])
        self._copies.append(self.epoch_path(epoch))

    def _drop(self, paths: list[Path]) -> None:
        for path in paths:
            if path in self._copies:
                self._copies.remove(path)
            self._removals.append(path)

    def remove_dropped(self, main: bool) -> None:
        """Before the checkpoint is written: delete what fell out (rank 0)."""
        removals, self._removals = self._removals, []
        if main:
            for path in removals:
                _remove(path)

    def copy_new(self, main: bool) -> list[Path]:
        """After last.pt is written: copy it to the names that joined; those paths."""
        copies, self._copies = self._copies, []
        if main:
            for path in copies:
                _copy(self.run, path)
        return copies

    def state(self) -> dict[str, Any]:
        return {
            "best": [[s, v] for s, v in self.best],
            "epochs": [[e, s] for e, s in self.epochs],
        }

    def restore(self, state: dict[str, Any] | None, step: int, main: bool) -> None:
        """The kept set of the checkpoint resumed from. A copy of this very step that
        a kill prevented is made now; an entry whose file is gone is forgotten."""
        if not state:
            return
        self.best = [(int(s), float(v)) for s, v in state.get("best", [])]
        self.epochs = [(int(e), int(s)) for e, s in state.get("epochs", [])]
        missing = [(p, s) for p, s in self._entries() if not p.exists()]
        for path, at in missing:
            if at == step:
                if main:
                    _copy(self.run, path)
            else:
                self.best = [b for b in self.best if self.best_path(b[0]) != path]
                self.epochs = [e for e in self.epochs if self.epoch_path(e[0]) != path]

    def _entries(self) -> list[tuple[Path, int]]:
        return [(self.best_path(s), s) for s, _ in self.best] + [
            (self.epoch_path(e), s) for e, s in self.epochs
        ]


def _copy(run: RunDir, path: Path) -> None:
    if run.sharded:
        copy_directory(run.last, path)
    else:
        copy_checkpoint(run.last, path)


def _remove(path: Path) -> None:
    """Delete a kept checkpoint by its name: never through a link, nothing else."""
    if not KEPT_NAME.fullmatch(path.name) or path.is_symlink():
        return
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
