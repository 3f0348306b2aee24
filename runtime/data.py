"""Training data: named tensors from the spec's source, a seeded split, and batches
that can start anywhere inside an epoch, so a run resumes without replaying data.

Two kinds of samples. Arrays that fit in memory (npz, pt, synthetic, or a mapping
returned by a data function) are gathered by index, on the GPU when they fit there.
A torch ``Dataset`` returned by a data function (items: mappings of name -> tensor)
goes through a DataLoader with worker processes. Both are batched from the same
per-epoch order, a permutation seeded by (seed, epoch) and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import random
import re
import signal
import stat
import sys
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..spec.errors import SpecError
from ..spec.train import SourceSpec
from .errors import TrainError
from .losses import BINARY_LOSSES, CLASS_INDEX_LOSSES
from .settings import Settings

__all__ = [
    "Batches",
    "DatasetSamples",
    "Split",
    "TensorSamples",
    "epoch_order",
    "load_split",
]

#: Samples of the plain ``source: synthetic``.
SYNTHETIC_SAMPLES = 1024
#: In-memory data up to this size moves to the GPU once, and batches are gathered there.
GPU_RESIDENT_BYTES = 1 << 30
#: The most memory synthetic samples may take; checked before they are made.
SYNTHETIC_MAX_BYTES = 1 << 31

_FUNCTION = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
Batch = dict[str, Tensor]


class TensorSamples:
    """Samples held as tensors of equal length: ``arrays[name][i]`` is sample i.

    ``where`` names the source in messages (``data.source``), and ``origin[i]`` is
    sample i's index in it (None: the same index)."""

    def __init__(
        self,
        arrays: Mapping[str, Tensor],
        where: str = "the data",
        origin: Tensor | None = None,
    ) -> None:
        self.arrays = dict(arrays)
        self.where = where
        self.origin = origin

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def subset(self, index: Tensor) -> TensorSamples:
        origin = index if self.origin is None else self.origin[index]
        return TensorSamples(
            {k: v[index] for k, v in self.arrays.items()}, self.where, origin
        )

    def source_index(self, i: int) -> int:
        """Sample i's index in its source."""
        return i if self.origin is None else int(self.origin[i])

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.arrays.values())


class DatasetSamples:
    """A map-style torch Dataset whose items are mappings of name -> tensor.

    ``labels`` are checked on every batch, on the CPU, before it goes to the device;
    ``where`` names the dataset in messages."""

    def __init__(
        self,
        dataset: Dataset,
        dtypes: Mapping[str, torch.dtype],
        labels: Sequence[LabelRange] = (),
        where: str = "the dataset",
    ) -> None:
        self.dataset = dataset
        self.dtypes = dict(dtypes)
        self.labels = list(labels)
        self.where = where

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def subset(self, index: Tensor) -> DatasetSamples:
        return DatasetSamples(
            Subset(self.dataset, index.tolist()), self.dtypes, self.labels, self.where
        )

    def source_index(self, i: int) -> int:
        """Item i's index in the dataset the data function returned."""
        dataset: Any = self.dataset
        while isinstance(dataset, Subset):
            i, dataset = int(dataset.indices[i]), dataset.dataset
        return i

    def check(self, batch: Mapping[str, Tensor], index: list[int]) -> None:
        """Raise TrainError, naming the sample, when a label is out of range."""
        for label in self.labels:
            found = label.first_bad(batch[label.target])
            if found is not None:
                row, value = found
                sample = self.source_index(index[row])
                raise TrainError(
                    f"{self.where}: {label.problem(value, sample)}; "
                    "training stopped before the step that would use it"
                )


@dataclass(frozen=True)
class LabelRange:
    """Class indices of ``target`` for a loss of ``output``: 0 to classes - 1, or
    the loss's ``ignore_index``."""

    target: str
    output: str
    op: str
    classes: int
    ignore: int | None = None

    def first_bad(self, labels: Tensor) -> tuple[int, int] | None:
        """(row, value) of the first sample with a label out of range: one
        vectorised pass (a host sync)."""
        if labels.is_floating_point() or labels.dtype == torch.bool or not len(labels):
            return None  # probabilities or one-hot targets, not class indices
        bad = (labels < 0) | (labels >= self.classes)
        if self.ignore is not None:
            bad &= labels != self.ignore
        rows = bad.reshape(len(labels), -1).any(dim=1).nonzero()
        if not len(rows):
            return None
        row = int(rows[0])
        return row, int(labels[row][bad[row]].reshape(-1)[0])

    def problem(self, value: int, sample: int) -> str:
        ignore = f", or {self.ignore} to ignore" if self.ignore is not None else ""
        return (
            f"array {self.target!r} holds class {value} at sample {sample}, but "
            f"output {self.output!r} ({self.op}) has {self.classes} classes: "
            f"0 to {self.classes - 1}{ignore}"
        )


Samples = TensorSamples | DatasetSamples


@dataclass
class Split:
    """The training samples and, when the run validates, the validation samples."""

    train: Samples
    val: Samples | None


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> Tensor:
    """The order of the samples in an epoch: a function of (seed, epoch) only."""
    if not shuffle:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


class Batches:
    """Batches of one split, on the device; with several processes, this rank's
    share of each batch of ``batch_size * world_size`` samples."""

    def __init__(
        self,
        samples: Samples,
        batch_size: int,
        device: torch.device,
        *,
        workers: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.batch_size = batch_size
        self.device = device
        self.workers = workers
        self.seed = seed
        # With several processes, each batch of the one-process order is
        # world_size * batch_size samples, and this rank takes its slice of it.
        self.rank = rank
        self.world_size = world_size
        self.pin = device.type == "cuda"
        if (
            isinstance(samples, TensorSamples)
            and device.type == "cuda"
            and samples.nbytes() <= GPU_RESIDENT_BYTES
        ):
            samples = TensorSamples(
                {k: v.to(device) for k, v in samples.arrays.items()},
                samples.where,
                samples.origin,
            )
        self.samples = samples
        # In-memory samples held on the GPU are gathered there, without copies.
        self.resident = isinstance(samples, TensorSamples) and (
            device.type == "cpu" or next(iter(samples.arrays.values())).is_cuda
        )

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def full_batches(self) -> int:
        """Full batches in an epoch (of ``batch_size * world_size`` samples)."""
        return len(self.samples) // (self.batch_size * self.world_size)

    def epoch(
        self, epoch: int, *, shuffle: bool, start: int = 0
    ) -> Generator[Batch, None, None]:
        """The full batches of an epoch from sample ``start`` of its order on; a
        short rest is left out, so every training step has one shape (no recompiles,
        no tiny batches for BatchNorm). The order changes each epoch, so no sample
        is always left out. With several processes, every rank walks the same order
        and takes its slice of each batch."""
        order = epoch_order(len(self.samples), epoch, self.seed, shuffle)
        size = self.batch_size
        step = size * self.world_size
        mine = self.rank * size  # this rank's slice of each batch
        begins = range(start, len(self.samples) - step + 1, step)
        index = [order[begin + mine : begin + mine + size] for begin in begins]
        yield from self._fetch(index, epoch, [begin + mine for begin in begins])

    def padded(self) -> Iterator[tuple[Batch, int]]:
        """Every sample once, in order, as (batch, real count). The last batch is
        padded to full size by repeating its last sample, so evaluation keeps the
        training shape too; the caller drops the padding from the outputs.

        With several processes, rank r takes batches r, r + world_size, ..., and
        every rank takes the same number: a rank short of one repeats a batch with
        a real count of 0 (the caller counts nothing of it), because a sharded
        model's forward is a collective that every rank must join."""
        n, size = len(self.samples), self.batch_size
        index: list[Tensor] = []
        counts = []
        for begin in range(0, n, size):
            real = torch.arange(begin, min(begin + size, n))
            counts.append(len(real))
            if len(real) < size:
                real = torch.cat([real, real[-1:].expand(size - len(real))])
            index.append(real)
        if self.world_size > 1:
            per_rank = math.ceil(len(index) / self.world_size)
            mine = range(self.rank, len(index), self.world_size)
            filler = index[mine[0] if mine else 0]
            index = [index[j] for j in mine] + [filler] * (per_rank - len(mine))
            counts = [counts[j] for j in mine] + [0] * (per_rank - len(mine))
        positions = [int(idx[0]) for idx in index]
        yield from zip(self._fetch(index, -1, positions), counts)

    def _fetch(
        self, index: list[Tensor], epoch: int, positions: list[int]
    ) -> Iterator[Batch]:
        """The batches of the given sample indices (one tensor of indices each);
        ``positions[i]`` is where batch i starts in the epoch's order, which seeds
        the random state its items are made with (see _SeededItems)."""
        samples = self.samples
        if isinstance(samples, TensorSamples):
            if self.resident:
                # All of the epoch's indices go to the device at once.
                rows: Any = torch.stack(index).to(self.device) if index else []
                for idx in rows:
                    yield {k: v.index_select(0, idx) for k, v in samples.arrays.items()}
            else:
                for idx in index:
                    batch = {
                        k: v.index_select(0, idx) for k, v in samples.arrays.items()
                    }
                    yield self._to_device(batch, pin=self.pin)
            return
        # A private generator: DataLoader draws its base seed from it, not from the
        # global RNG, whose state a checkpoint restores.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        keys = [
            [(batch_seed(self.seed, epoch, position), i) for i in idx.tolist()]
            for idx, position in zip(index, positions)
        ]
        loader = DataLoader(
            _SeededItems(samples.dataset),
            batch_sampler=keys,
            num_workers=self.workers,
            pin_memory=self.pin,
            generator=generator,
            worker_init_fn=_ignore_interrupts if self.workers else None,
        )
        for batch, batch_keys in zip(loader, keys):
            if not isinstance(batch, Mapping):
                raise TypeError(
                    "the dataset's items must be mappings of name -> tensor, "
                    f"received {type(batch).__name__} batches"
                )
            samples.check(batch, [i for _, i in batch_keys])
            # Copied from the loader's pinned memory, cast on the device.
            yield {
                k: batch[k].to(self.device, dtype=d, non_blocking=True)
                for k, d in samples.dtypes.items()
            }

    def _to_device(self, batch: Batch, *, pin: bool) -> Batch:
        if self.device.type == "cpu":
            return batch
        if pin:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


# -- reading the spec's sources ----------------------------------------------------


def load_split(settings: Settings, allow_imports: frozenset[str]) -> Split:
    """Read the source (and validation source), check names and shapes, split."""
    data = settings.train.data
    reader = _Reader(settings, allow_imports)
    train, val = reader.read(data.source, ("data", "source"), functions=True)
    if data.val is not None:
        val, _ = reader.read(data.val, ("data", "val"), functions=False)
    train_samples = reader.samples(train, ("data", "source"), "training")
    val_samples = (
        reader.samples(
            val, ("data", "val") if data.val is not None else ("data", "source"), "val"
        )
        if val is not None
        else None
    )
    if data.val_fraction is not None:
        if val_samples is not None:
            raise settings.error(
                ("data", "val_fraction"),
                "the data function returns validation data already; drop val_fraction",
                key=True,
            )
        train_samples, val_samples = _split(
            train_samples, data.val_fraction, settings.train.seed, settings
        )
    return Split(train_samples, val_samples)


def _split(
    samples: Samples, fraction: float, seed: int, settings: Settings
) -> tuple[Samples, Samples]:
    n = len(samples)
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise settings.error(
            ("data", "val_fraction"),
            f"val_fraction {fraction} of {n} samples leaves none to train on",
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_index, _ = order[: n - n_val].sort()
    val_index, _ = order[n - n_val :].sort()
    return samples.subset(train_index), samples.subset(val_index)


class _Reader:
    def __init__(self, settings: Settings, allow_imports: frozenset[str]) -> None:
        self.settings = settings
        self.allow_imports = allow_imports
        spec = settings.spec.compiled.spec
        self.inputs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for name, decl in spec.inputs.items():
            shape, dtype = (
                (decl, "float32")
                if isinstance(decl, list)
                else (
                    decl.shape,
                    decl.dtype,
                )
            )
            self.inputs[name] = (tuple(shape), getattr(torch, dtype))
        self.targets: dict[str, Any] = {}
        for term in settings.losses:
            for name in term.data_names:
                self.targets.setdefault(name, term)

    @property
    def names(self) -> list[str]:
        return list(self.inputs) + [t for t in self.targets if t not in self.inputs]

    def error(self, path: tuple, message: str) -> SpecError:
        return self.settings.error(path, message)

    def sample_shape(self, output: str) -> list[int]:
        """An output's shape without the batch dimension (unknown sizes as 1)."""
        value = self.settings.outputs[output]
        shape = list(value.shape)
        del shape[value.batch_dim or 0]
        return [d if isinstance(d, int) else 1 for d in shape]

    def label_ranges(self) -> list[LabelRange]:
        """The class-index targets of the losses, with their output's classes."""
        found = []
        for term in self.settings.losses:
            if term.op not in CLASS_INDEX_LOSSES or term.target is None:
                continue
            value = self.settings.outputs[term.output]
            shape = list(value.shape)
            del shape[value.batch_dim or 0]
            if not shape or not isinstance(shape[0], int):
                continue
            ignore = getattr(term.module, "ignore_index", None)
            found.append(
                LabelRange(term.target, term.output, term.op, shape[0], ignore)
            )
        return found

    # -- sources -------------------------------------------------------------

    def read(
        self, source: SourceSpec | str, path: tuple, *, functions: bool
    ) -> tuple[Any, Any]:
        """(train, val) of a source; val is None except from a data function."""
        if isinstance(source, str):
            if source == "synthetic":
                return self.synthetic(SYNTHETIC_SAMPLES, path), None
            if functions and _FUNCTION.match(source):
                return self.function(source, path)
            allowed = (
                "'synthetic' or 'package.module:function'"
                if functions
                else ("'synthetic' ({npz: file} and {pt: file} are mappings)")
            )
            raise self.error(path, f"data source {source!r}: expected {allowed}")
        given = [
            k for k in ("npz", "pt", "synthetic") if getattr(source, k) is not None
        ]
        if len(given) != 1:
            raise self.error(
                path,
                "a data source has exactly one of npz, pt, synthetic; "
                + (f"received {', '.join(given)}" if given else "received none"),
            )
        kind = given[0]
        if kind == "synthetic":
            n = source.synthetic or SYNTHETIC_SAMPLES
            return self.synthetic(n, (*path, "synthetic")), None
        file = self.resolve(getattr(source, kind))
        where = (*path, kind)
        if kind == "npz":
            return self.npz(file, where), None
        return self.pt(file, where), None

    def resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        spec_path = self.settings.spec.path
        if not path.is_absolute() and not spec_path.startswith("<"):
            path = Path(spec_path).resolve().parent / path
        return path

    def regular_file(self, file: Path, path: tuple) -> None:
        """A data file must be a regular file: a FIFO would hang, a device never end."""
        try:
            mode = os.stat(file).st_mode
        except FileNotFoundError:
            raise self.error(path, f"no such data file: {file}") from None
        except (OSError, ValueError) as exc:
            raise self.error(path, f"cannot read {file}: {_first_line(exc)}") from None
        if not stat.S_ISREG(mode):
            raise self.error(path, f"{file} is not a regular file")

    def npz(self, file: Path, path: tuple) -> dict[str, Tensor]:
        """The arrays the run needs, read without pickle: an object array is an
        error, as are strings, dates and other arrays that are not numbers."""
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency
            raise self.error(path, "reading .npz files needs numpy") from None
        self.regular_file(file, path)
        try:
            with open(file, "rb") as handle:
                magic = handle.read(4)
        except OSError as exc:
            raise self.error(path, f"cannot read {file}: {_first_line(exc)}") from None
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise self.error(
                path, f"{file} is not an .npz archive (a zip of named .npy arrays)"
            )
        arrays: dict[str, Tensor] = {}
        try:
            archive = np.load(file, allow_pickle=False)
        except Exception as exc:  # zipfile, zlib and numpy raise many kinds
            raise self.error(
                path, f"cannot read {file} as .npz: {_first_line(exc)}"
            ) from None
        with archive:
            present = list(archive.files)
            for name in self.names:
                if name not in present:
                    message = self.missing(name, present)
                    if {"format", "shape"} <= set(present):
                        message += (
                            f"; {file} looks like a scipy sparse matrix "
                            "(save_npz): store dense arrays with numpy.savez"
                        )
                    raise self.error(path, message)
                try:
                    array = archive[name]
                except ValueError as exc:
                    reason = _first_line(exc)
                    if "allow_pickle" in reason:
                        reason = (
                            "it holds Python objects, which are read only with "
                            "pickle, and nnspec never unpickles data"
                        )
                    raise self.error(
                        path, f"cannot read array {name!r} of {file}: {reason}"
                    ) from None
                except Exception as exc:  # a damaged member: zlib, zipfile, EOF
                    raise self.error(
                        path,
                        f"cannot read array {name!r} of {file}: {_first_line(exc)}",
                    ) from None
                if array.dtype.kind not in "biuf":
                    raise self.error(
                        path,
                        f"array {name!r} of {file} holds "
                        f"{_KINDS.get(array.dtype.kind, 'values')} (dtype "
                        f"{array.dtype}); data arrays hold numbers or booleans",
                    )
                if array.ndim == 0:
                    raise self.error(
                        path,
                        f"array {name!r} of {file} is a single value; samples go "
                        "along its first axis",
                    )
                arrays[name] = torch.from_numpy(np.ascontiguousarray(array))
        return arrays

    def pt(self, file: Path, path: tuple) -> dict[str, Tensor]:
        self.regular_file(file, path)
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise self.error(path, f"no such data file: {file}") from None
        except Exception as exc:  # torch raises many kinds for a bad file
            raise self.error(
                path, f"cannot read {file} with torch.load: {exc}"
            ) from None
        if not isinstance(loaded, Mapping) or not all(
            isinstance(v, Tensor) for v in loaded.values()
        ):
            raise self.error(
                path, f"{file} must hold a mapping of name -> tensor for training"
            )
        return dict(loaded)

    def function(self, name: str, path: tuple) -> tuple[Any, Any]:
        module_name, _, attr = name.partition(":")
        package = module_name.split(".")[0]
        if package not in self.allow_imports:
            raise self.error(
                path,
                f"data function {name!r} imports package {package!r}, which is not "
                f"allowed; allow it with --allow-import {package} (nnspec train) or "
                f"allow_imports=[{package!r}] (Trainer)",
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error(path, f"cannot import {module_name!r}: {exc}") from None
        function = getattr(module, attr, None)
        if not callable(function):
            raise self.error(path, f"module {module_name!r} has no function {attr!r}")
        result = function()
        if not (isinstance(result, tuple) and len(result) == 2):
            raise self.error(
                path,
                f"data function {name!r} must return (train, val); val may be None",
            )
        return result

    def synthetic(self, n: int, path: tuple) -> dict[str, Tensor]:
        """Random inputs as declared, and targets each loss can take; at most
        SYNTHETIC_MAX_BYTES of them, checked before any is made."""
        self.check_synthetic_size(n, path)
        generator = torch.Generator().manual_seed(self.settings.train.seed)
        arrays: dict[str, Tensor] = {}
        for name, (shape, dtype) in self.inputs.items():
            arrays[name] = _random((n, *shape), dtype, generator)
        for name, term in self.targets.items():
            if name in arrays:
                continue
            value = self.settings.outputs[term.output]
            out_shape = list(value.shape)
            batch_dim = value.batch_dim or 0
            del out_shape[batch_dim]
            if term.op in CLASS_INDEX_LOSSES:
                classes = out_shape[0] if out_shape else 2
                arrays[name] = torch.randint(
                    0, classes, (n, *out_shape[1:]), generator=generator
                )
            elif term.op in BINARY_LOSSES:
                arrays[name] = torch.randint(
                    0, 2, (n, *out_shape), generator=generator
                ).float()
            else:
                arrays[name] = torch.randn((n, *out_shape), generator=generator).to(
                    value.dtype
                )
        return arrays

    def check_synthetic_size(self, n: int, path: tuple) -> None:
        per_sample = 0
        for shape, dtype in self.inputs.values():
            # Floating inputs are drawn as float32 first, then cast.
            size = max(dtype.itemsize, 4) if dtype.is_floating_point else 8
            per_sample += math.prod(shape) * size
        for name, term in self.targets.items():
            if name not in self.inputs:  # at most 8 bytes an element
                dims = self.sample_shape(term.output)
                if term.op in CLASS_INDEX_LOSSES:
                    dims = dims[1:]  # a class index where the output has classes
                per_sample += math.prod(dims) * 8
        total = n * per_sample
        if total > SYNTHETIC_MAX_BYTES:
            most = SYNTHETIC_MAX_BYTES // max(per_sample, 1)
            raise self.error(
                path,
                f"{n} synthetic samples take {_size(total)}, over the limit of "
                f"{_size(SYNTHETIC_MAX_BYTES)} for synthetic data: ask for at most "
                f"{most} samples",
            )

    # -- checks --------------------------------------------------------------

    def samples(self, raw: Any, path: tuple, role: str) -> Samples:
        """The samples of a source, checked: names, shapes, dtypes, and (for
        arrays in memory, at once) the range of class labels."""
        if isinstance(raw, Mapping):
            samples = self.tensor_samples(raw, path)
            samples.where = ".".join(("train", *path))
            for label in self.label_ranges():
                found = label.first_bad(samples.arrays[label.target])
                if found is not None:
                    what = "validation data" if role == "val" else "data"
                    problem = label.problem(found[1], found[0])
                    raise self.error(path, f"the {what}'s {problem}")
            return samples
        if isinstance(raw, Dataset) or (
            hasattr(raw, "__getitem__") and hasattr(raw, "__len__")
        ):
            samples_ = self.dataset_samples(raw, path)
            name = self.settings.train.data.source
            samples_.where = f"the {'validation' if role == 'val' else 'training'} "
            samples_.where += f"dataset of {name}"
            return samples_
        raise self.error(
            path,
            f"data must be a mapping of name -> tensor or a torch Dataset, "
            f"received {type(raw).__name__}",
        )

    def tensor_samples(self, raw: Mapping[str, Any], path: tuple) -> TensorSamples:
        arrays: dict[str, Tensor] = {}
        for name in self.names:
            if name not in raw:
                raise self.error(path, self.missing(name, list(raw)))
            arrays[name] = self.convert(name, self.tensor(name, raw[name], path), path)
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k}: {v}" for k, v in lengths.items())
            raise self.error(
                path, f"the arrays hold different numbers of samples ({sizes})"
            )
        if not next(iter(lengths.values())):
            raise self.error(path, "the data holds no samples")
        return TensorSamples(arrays)

    def dataset_samples(self, dataset: Any, path: tuple) -> DatasetSamples:
        if len(dataset) == 0:
            raise self.error(path, "the dataset holds no samples")
        first = dataset[0]
        if not isinstance(first, Mapping):
            raise self.error(
                path,
                "the dataset's items must be mappings of name -> tensor, "
                f"received {type(first).__name__}",
            )
        dtypes = {}
        for name in self.names:
            if name not in first:
                raise self.error(path, self.missing(name, list(first)))
            one = self.tensor(name, first[name], path, item=True)
            dtypes[name] = self.convert(name, one.unsqueeze(0), path).dtype
        return DatasetSamples(dataset, dtypes, self.label_ranges())

    def tensor(
        self, name: str, value: Any, path: tuple, *, item: bool = False
    ) -> Tensor:
        """A data array as a dense tensor of numbers (of one sample, for ``item``)."""
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise self.error(
                path, f"array {name!r} cannot be made a tensor: {_first_line(exc)}"
            ) from None
        if tensor.layout != torch.strided:
            raise self.error(
                path,
                f"array {name!r} is a {str(tensor.layout).removeprefix('torch.')} "
                "tensor; store a dense one (tensor.to_dense())",
            )
        if tensor.is_complex() or tensor.is_quantized:
            raise self.error(
                path,
                f"array {name!r} holds {str(tensor.dtype).removeprefix('torch.')} "
                "values; data arrays hold real numbers or booleans",
            )
        if not item and tensor.dim() == 0:
            raise self.error(
                path,
                f"array {name!r} is a single value; samples go along its first axis",
            )
        return tensor

    def missing(self, name: str, present: list[str]) -> str:
        role = "input" if name in self.inputs else "loss target"
        return (
            f"the data has no array {name!r} (the {role}); "
            f"it has: {', '.join(map(str, present)) or 'nothing'}"
        )

    def convert(self, name: str, array: Tensor, path: tuple) -> Tensor:
        """An input checked against its declared shape and cast to its dtype; a
        target as the losses take it (class indices as int64)."""
        if name in self.inputs:
            shape, dtype = self.inputs[name]
            if tuple(array.shape[1:]) != shape:
                raise self.error(
                    path,
                    f"array {name!r} holds samples of shape {list(array.shape[1:])}; "
                    f"input {name!r} is declared {list(shape)}",
                )
            return array.to(dtype)
        if array.dtype == torch.bool:
            return array.float()
        if not array.is_floating_point():
            return array.long()
        value = self.settings.outputs[self.targets[name].output]
        return array.to(value.dtype)


def batch_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the random state a Dataset's items are made with, for the batch
    at ``position`` of epoch ``epoch``'s order (-1: validation): a function of
    these and the run's seed alone, whichever worker makes the batch and whether
    the run was resumed."""
    digest = hashlib.blake2b(
        f"{seed}:{epoch}:{position}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1  # below 2**63


class _SeededItems(Dataset):
    """A Dataset's items, fetched a batch at a time with keys ``(seed, index)``:
    torch's, Python's and NumPy's random states are seeded with the batch's seed
    first, so random augmentation in ``__getitem__`` depends on the batch's place
    in the epoch, not on a worker's history. (In the main process, with no
    workers, the states are put back after the batch.)"""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        if not keys:
            return []
        if torch.utils.data.get_worker_info() is not None:
            _seed_all(keys[0][0])
            return [self.dataset[i] for _, i in keys]
        states = _random_states()
        try:
            _seed_all(keys[0][0])
            return [self.dataset[i] for _, i in keys]
        finally:
            _set_random_states(states)


def _seed_all(seed: int) -> None:
    torch.default_generator.manual_seed(seed)  # the CPU's alone, not CUDA's
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % 2**32)


def _random_states() -> tuple[Any, Any, Any]:
    numpy = sys.modules.get("numpy")
    return (
        torch.random.get_rng_state(),
        random.getstate(),
        numpy.random.get_state() if numpy is not None else None,
    )


def _set_random_states(states: tuple[Any, Any, Any]) -> None:
    torch_state, python_state, numpy_state = states
    torch.random.set_rng_state(torch_state)
    random.setstate(python_state)
    if numpy_state is not None:
        sys.modules["numpy"].random.set_state(numpy_state)


_KINDS = {
    "U": "strings",
    "S": "bytes",
    "O": "Python objects",
    "M": "dates",
    "m": "time spans",
    "V": "records",
    "c": "complex numbers",
}


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches the workers too; the main process handles it (a checkpoint at
    the end of the step), so a worker must not die of it meanwhile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _random(
    shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator
) -> Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, 2, shape, generator=generator).to(dtype)
