"""The run directory: what a run writes, and where.

::

    runs/<spec stem>/
        .nnspec-run               the marker: this folder is a run directory of nnspec
        .nnspec-lock              locked (flock) while a process trains here; its pid
        spec.yaml                 the spec as trained: the text as read, or, for a
                                  spec with extends:, the composed spec (one file that
                                  compiles alone to the same model)
        sources/                  for a spec with extends: the originals, as read
        train.json                the train settings in effect (--set applied), params
        split.json                the source's samples held out for validation and test
        model.py                  the generated model source
        metrics.jsonl             one JSON object per logged step and per validation
        metrics.csv               the same records as rows (log: {csv: false}: none)
        profile.json              nnspec train --profile: a torch.profiler trace
                                  (profile-rank<R>.json with several processes)
        events.out.tfevents.*     TensorBoard scalars
        checkpoints/last.pt       the latest state (resume from here)
        checkpoints/best.pt       the state with the best monitored validation value
        checkpoints/best-step<N>.pt, checkpoints/epoch-<N>.pt
                                  kept checkpoints (checkpoints: in the train section)

A sharded run (strategy fsdp on several processes) writes directories instead:
``checkpoints/last.dcp/`` and ``checkpoints/best.dcp/`` (torch.distributed.checkpoint
shards and a ``meta.pt``); ``nnspec consolidate`` turns one into a ``.pt`` file.

A folder is a run directory only when it holds the marker, written when nnspec
creates it. nnspec writes into a new or empty folder, or into a run directory; it
refuses any other folder. In a run directory it writes and removes only the names
above (and its own temporary ``.NAME.PID.partial`` files), and refuses to go
through a symbolic link at any of them. While a process trains in a run directory
it holds an OS lock on ``.nnspec-lock`` (released when the process ends, however
it ends); another process is refused with the holder's pid.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .checkpoint import (
    CHECKPOINT_NAMES,
    KEPT_NAME,
    recover_directory,
    remove_partial,
)
from .errors import TrainError

__all__ = ["LOCK_FILE", "MARKER_FILE", "RUN_FORMAT", "RunDir"]

MARKER_FILE = ".nnspec-run"
LOCK_FILE = ".nnspec-lock"
RUN_FORMAT = 1
SOURCES = "sources"
#: The files nnspec writes at the top of a run directory (besides the event files).
INPUT_FILES = ("spec.yaml", "model.py", "train.json", "split.json")
#: Files a run writes as it goes, besides metrics.jsonl and the event files.
LOG_FILES = ("metrics.csv", "profile.json")
_PROFILE_RANK = re.compile(r"profile-rank\d+\.json")
_EVENTS = re.compile(r"events\.out\.tfevents\.[^/]+")
_SOURCE_NAME = re.compile(r"\d+-[A-Za-z0-9._-]+")


@dataclass
class RunDir:
    """Paths of one run's files, and the few operations on them."""

    root: Path
    sharded: bool = False  # checkpoints are directories of shards (FSDP)
    _lock: int | None = field(default=None, repr=False, compare=False)

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

    @property
    def marker(self) -> Path:
        return self.root / MARKER_FILE

    def log_files(self) -> list[Path]:
        """metrics.csv and profile traces (the names in LOG_FILES, per rank)."""
        ranks = [p for p in self.root.glob("profile-rank*.json")]
        return [self.root / n for n in LOG_FILES] + sorted(
            p for p in ranks if _PROFILE_RANK.fullmatch(p.name)
        )

    def kept_checkpoints(self) -> list[Path]:
        """best-step<N> and epoch-<N> checkpoints (see retention.py)."""
        if not self.checkpoints.is_dir() or self.checkpoints.is_symlink():
            return []
        return sorted(
            p for p in self.checkpoints.iterdir() if KEPT_NAME.fullmatch(p.name)
        )

    def event_files(self) -> list[Path]:
        return sorted(
            p
            for p in self.root.glob("events.out.tfevents.*")
            if _EVENTS.fullmatch(p.name)
        )

    # -- whose folder ----------------------------------------------------------------

    def is_run(self) -> bool:
        """Whether the folder says it is a run directory of nnspec (the marker)."""
        return self.marker.is_file() and not self.marker.is_symlink()

    def claim(self) -> None:
        """Make the folder a run directory (a new or empty folder), or check that it
        is one; then lock it. Refuses any other folder: nnspec does not write into
        (or delete from) a folder it did not create."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise TrainError(f"{root} is not a folder; pick another --out")
        if self.marker.is_symlink() or (
            self.marker.exists() and not self.marker.is_file()
        ):
            raise TrainError(
                f"{self.marker} is not a file nnspec wrote; pick another --out"
            )
        if not self.is_run():
            if root.exists() and any(root.iterdir()):
                raise TrainError(
                    f"{root} is not empty and is not a run directory of nnspec (it "
                    f"has no {MARKER_FILE} file); nnspec writes only into a new or "
                    "empty folder or into one of its runs: pick another --out"
                )
            with _writing(self.marker):
                root.mkdir(parents=True, exist_ok=True)
                info = {"format": RUN_FORMAT, "nnspec": _version()}
                self.marker.write_text(json.dumps(info) + "\n", encoding="utf-8")
        self.lock()
        self.check_links()

    def lock(self) -> None:
        """Take the run's lock (an flock on .nnspec-lock, held until release() or
        the end of the process); TrainError naming the holder's pid if it is held."""
        import fcntl

        if self._lock is not None:
            return
        path = self.root / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise TrainError(
                f"cannot lock {self.root}: {path}: {_reason(exc)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TrainError(
                    f"cannot lock {self.root}: {path}: {_reason(exc)}"
                ) from None
            raise TrainError(
                f"{self.root} is in use: another nnspec process "
                f"({'pid ' + holder if holder else 'pid unknown'}) trains in it; wait "
                "for it to end (or stop it), or pick another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._lock = fd

    def release(self) -> None:
        """Give the lock back (also done by the OS when the process ends)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock, 0)
            os.close(self._lock)  # closing the last descriptor releases the flock
            self._lock = None

    def _names(self) -> list[Path]:
        """Every path nnspec writes in the run directory."""
        names = [
            self.marker,
            self.root / LOCK_FILE,
            *(self.root / n for n in INPUT_FILES),
            self.metrics,
            *self.log_files(),
            self.root / SOURCES,
            self.checkpoints,
            *self.event_files(),
        ]
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            names += [self.checkpoints / n for n in CHECKPOINT_NAMES]
            names += self.kept_checkpoints()
            names += list(self.checkpoints.glob(".*.previous"))
            names += list(self.checkpoints.glob(".*.partial"))
        names += list(self.root.glob(".*.partial"))
        return names

    def check_links(self) -> None:
        """Refuse a symbolic link (or a file where a folder belongs) at a name nnspec
        writes: writing or removing through it would reach outside the run."""
        for path in self._names():
            if path.is_symlink():
                raise TrainError(
                    f"{path} is a symbolic link; nnspec does not write or remove "
                    "through links in a run directory: replace it with the file or "
                    "folder itself, or pick another --out"
                )
        for folder in (self.checkpoints, self.root / SOURCES):
            if folder.exists() and not folder.is_dir():
                raise TrainError(
                    f"{folder} is not a folder; a run directory keeps its "
                    f"{folder.name} there: pick another --out"
                )

    def holds_run(self) -> bool:
        return (
            any(p.exists() for p in self._checkpoint_paths())
            or self.metrics.exists()
            or bool(self.event_files())
        )

    def prepare(self, *, resume: bool, overwrite: bool) -> None:
        """Create (or check) and lock the directory; refuse to mix a new run into an
        old one's files."""
        if resume and not overwrite and not self.is_run():
            raise TrainError(
                f"nothing to resume: {self.root} is not a run directory of nnspec "
                f"(no {MARKER_FILE}); start a new run without --resume"
            )
        self.claim()
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
        with _writing(self.checkpoints):
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            remove_partial(self.checkpoints)
            remove_partial(self.root, (self.metrics.name, *LOG_FILES, *INPUT_FILES))
            for path in self._checkpoint_paths():
                recover_directory(path)

    def clear(self) -> None:
        """Remove the files a run writes, by name (and nothing else; never through a
        link)."""
        self.check_links()
        paths = [
            self.metrics,
            *self.log_files(),
            *self.kept_checkpoints(),
            *self._checkpoint_paths(),
            *self.event_files(),
            self.root / SOURCES,
        ]
        for path in paths:
            with _writing(path):
                if path.is_dir() and not path.is_symlink():
                    if path.name == SOURCES:
                        _remove_sources(path)
                    else:
                        shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)

    def write_inputs(
        self,
        spec_text: str,
        source: str,
        settings: dict[str, Any],
        *,
        composed: Any = None,
        originals: dict[str, str] | None = None,
    ) -> None:
        """The spec, the generated source and the settings in effect.

        For a spec with ``extends:``, ``composed`` is the composed spec's data and
        ``originals`` the text of each file of the chain by its path: spec.yaml is
        then the composed spec and sources/ holds the originals. A spec given as the
        run's own spec.yaml (a resume from the run directory) is left as it is."""
        self.check_links()
        spec_file = self.root / "spec.yaml"
        info = {**settings, "torch_version": torch.__version__}
        own = _same_file(settings.get("spec"), spec_file)
        if not own:
            saved: dict[str, str] = {}
            if composed is not None and originals:
                spec_text = _composed_text(composed)
                for i, (path, text) in enumerate(originals.items()):
                    saved[_source_name(i, path)] = text
            sources = self.root / SOURCES
            with _writing(sources):
                if sources.is_dir():
                    _remove_sources(sources)
                if saved:
                    sources.mkdir()
                    for name, text in saved.items():
                        (sources / name).write_text(text, encoding="utf-8")
            if saved:
                info["sources"] = dict(zip(saved, originals or {}))
            with _writing(spec_file):
                spec_file.write_text(spec_text, encoding="utf-8")
        with _writing(self.root / "model.py"):
            (self.root / "model.py").write_text(source, encoding="utf-8")
        text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
        with _writing(self.root / "train.json"):
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
        with _writing(self.metrics):
            partial.write_text("".join(kept), encoding="utf-8")
            os.replace(partial, self.metrics)


@contextlib.contextmanager
def _writing(path: Path) -> Any:
    """An OSError while writing ``path`` (a read-only folder, a full disk) as a
    one-line TrainError naming it."""
    try:
        yield
    except OSError as exc:
        raise TrainError(f"cannot write {path}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _version() -> str:
    from ..spec.version import __version__

    return str(__version__)


def _read_pid(fd: int) -> str:
    """The pid the lock's holder wrote (it writes it just after locking: wait a
    moment for it)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.05)
    return ""


def _same_file(spec_path: Any, target: Path) -> bool:
    try:
        return isinstance(spec_path, str) and os.path.samefile(spec_path, target)
    except OSError:
        return False


def _source_name(index: int, path: str) -> str:
    """A plain file name for the ``index``-th file of an extends chain."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path)).lstrip(".")
    return f"{index}-{base or 'spec.yaml'}"


def _remove_sources(folder: Path) -> None:
    """Remove the originals nnspec saved (by their names), then the folder."""
    for path in folder.iterdir():
        if _SOURCE_NAME.fullmatch(path.name) and path.is_file():
            path.unlink()
    try:
        folder.rmdir()
    except OSError:
        raise TrainError(
            f"{folder} holds files nnspec did not write; move them away"
        ) from None


def _composed_text(data: Any) -> str:
    """The composed spec as YAML (plain types only; file names are left out of the
    comment: they may hold any character)."""
    head = (
        "# The spec composed from its extends: chain: this file compiles alone to the\n"
        "# model of the run. The original files are in sources/ (see train.json).\n"
    )
    return head + yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value
