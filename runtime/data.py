"""Training data: named tensors from the spec's source, a seeded split, and batches
that can start anywhere inside an epoch, so a run resumes without replaying data.

Two kinds of samples. Arrays that fit in memory (npz, pt, synthetic, or a mapping
returned by a data function) are gathered by index, on the GPU when they fit there.
A torch ``Dataset`` returned by a data function (items: mappings of name -> tensor)
goes through a DataLoader with worker processes. Both are batched from the same
per-epoch order, a permutation seeded by (seed, epoch) and nothing else.
"""

from __future__ import annotations

import importlib
import math
import re
import signal
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..spec.errors import SpecError
from ..spec.train import SourceSpec
from .settings import BINARY_LOSSES, CLASS_INDEX_LOSSES, Settings

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

_FUNCTION = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
Batch = dict[str, Tensor]


class TensorSamples:
    """Samples held as tensors of equal length: ``arrays[name][i]`` is sample i."""

    def __init__(self, arrays: Mapping[str, Tensor]) -> None:
        self.arrays = dict(arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def subset(self, index: Tensor) -> TensorSamples:
        return TensorSamples({k: v[index] for k, v in self.arrays.items()})

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.arrays.values())


class DatasetSamples:
    """A map-style torch Dataset whose items are mappings of name -> tensor."""

    def __init__(self, dataset: Dataset, dtypes: Mapping[str, torch.dtype]) -> None:
        self.dataset = dataset
        self.dtypes = dict(dtypes)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def subset(self, index: Tensor) -> DatasetSamples:
        return DatasetSamples(Subset(self.dataset, index.tolist()), self.dtypes)


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
                {k: v.to(device) for k, v in samples.arrays.items()}
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
        index = [
            order[begin + mine : begin + mine + size]
            for begin in range(start, len(self.samples) - step + 1, step)
        ]
        yield from self._fetch(index, epoch)

    def padded(self) -> Iterator[tuple[Batch, int]]:
        """Every sample once, in order, as (batch, real count). The last batch is
        padded to full size by repeating its last sample, so evaluation keeps the
        training shape too; the caller drops the padding from the outputs.

        With several processes, rank r takes batches r, r + world_size, ..., and
        every rank takes the same number: a rank short of one repeats a batch with
        a real count of 0 (the caller counts nothing of it), because a sharded
        model's forward is a collective that every rank must join."""
        n, size = len(self.samples), self.batch_size
        index, counts = [], []
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
        yield from zip(self._fetch(index, -1), counts)

    def _fetch(self, index: list[Tensor], epoch: int) -> Iterator[Batch]:
        """The batches of the given sample indices (one tensor of indices each)."""
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
        loader = DataLoader(
            samples.dataset,
            batch_sampler=[idx.tolist() for idx in index],
            num_workers=self.workers,
            pin_memory=self.pin,
            generator=generator,
            worker_init_fn=_ignore_interrupts if self.workers else None,
        )
        for batch in loader:
            if not isinstance(batch, Mapping):
                raise TypeError(
                    "the dataset's items must be mappings of name -> tensor, "
                    f"received {type(batch).__name__} batches"
                )
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
    train_samples = reader.samples(train, ("data", "source"))
    val_samples = reader.samples(val, ("data", "val")) if val is not None else None
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
            self.targets.setdefault(term.target, term)

    @property
    def names(self) -> list[str]:
        return list(self.inputs) + [t for t in self.targets if t not in self.inputs]

    def error(self, path: tuple, message: str) -> SpecError:
        return self.settings.error(path, message)

    # -- sources -------------------------------------------------------------

    def read(
        self, source: SourceSpec | str, path: tuple, *, functions: bool
    ) -> tuple[Any, Any]:
        """(train, val) of a source; val is None except from a data function."""
        if isinstance(source, str):
            if source == "synthetic":
                return self.synthetic(SYNTHETIC_SAMPLES), None
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
            return self.synthetic(source.synthetic or SYNTHETIC_SAMPLES), None
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

    def npz(self, file: Path, path: tuple) -> dict[str, Tensor]:
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency
            raise self.error(path, "reading .npz files needs numpy") from None
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except FileNotFoundError:
            raise self.error(path, f"no such data file: {file}") from None
        except (OSError, ValueError) as exc:
            raise self.error(path, f"cannot read {file} as .npz: {exc}") from None
        return {
            name: torch.from_numpy(np.ascontiguousarray(a))
            for name, a in arrays.items()
        }

    def pt(self, file: Path, path: tuple) -> dict[str, Tensor]:
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

    def synthetic(self, n: int) -> dict[str, Tensor]:
        """Random inputs as declared, and targets each loss can take."""
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

    # -- checks --------------------------------------------------------------

    def samples(self, raw: Any, path: tuple) -> Samples:
        if isinstance(raw, Mapping):
            return self.tensor_samples(raw, path)
        if isinstance(raw, Dataset) or (
            hasattr(raw, "__getitem__") and hasattr(raw, "__len__")
        ):
            return self.dataset_samples(raw, path)
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
            arrays[name] = self.convert(name, torch.as_tensor(raw[name]), path)
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
            one = torch.as_tensor(first[name])
            dtypes[name] = self.convert(name, one.unsqueeze(0), path).dtype
        return DatasetSamples(dataset, dtypes)

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
