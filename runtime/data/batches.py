"""Batches of one split, from a per-epoch order seeded by (seed, epoch) alone, that
can start anywhere inside an epoch; a Dataset's items are made from a random state
seeded by the batch's place in the epoch, whichever worker makes them."""

from __future__ import annotations

import hashlib
import math
import random
import signal
import sys
from collections.abc import Generator, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import TrainError
from .items import BadItem, ItemCollate, ItemError
from .samples import Samples, TensorSamples

__all__ = ["GPU_RESIDENT_BYTES", "Batch", "Batches", "batch_seed", "epoch_order"]

#: In-memory data up to this size moves to the GPU once, and batches are gathered there.
GPU_RESIDENT_BYTES = 1 << 30

Batch = dict[str, Tensor]


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
        seeds = [batch_seed(self.seed, epoch, position) for position in positions]
        keys = [[(seed, i) for i in idx.tolist()] for idx, seed in zip(index, seeds)]
        loader = DataLoader(
            _SeededItems(samples.dataset),
            batch_sampler=keys,
            num_workers=self.workers,
            pin_memory=self.pin,
            generator=generator,
            worker_init_fn=_ignore_interrupts if self.workers else None,
            collate_fn=ItemCollate(list(samples.dtypes), samples.items, samples.shapes),
        )
        for batch, batch_keys in zip(loader, keys):
            if isinstance(batch, BadItem):
                sample = samples.source_index(batch_keys[batch.row][1])
                raise TrainError(
                    f"{samples.where}: item {sample}: {batch.message}; training "
                    "stopped before the step that would use it"
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
            return self._items(keys)
        states = _random_states()
        try:
            _seed_all(keys[0][0])
            return self._items(keys)
        finally:
            _set_random_states(states)

    def _items(self, keys: list[tuple[int, int]]) -> list[Any]:
        items = []
        for row, (_, i) in enumerate(keys):
            try:
                items.append(self.dataset[i])
            except ItemError as exc:  # raised in the main process, naming the sample
                return [BadItem(row, str(exc))]
        return items


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


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches the workers too; the main process handles it (a checkpoint at
    the end of the step), so a worker must not die of it meanwhile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
