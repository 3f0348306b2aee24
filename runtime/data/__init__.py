"""Training data: named tensors from the spec's sources, a seeded split, and batches
that can start anywhere inside an epoch, so a run resumes without replaying data.

Two kinds of samples. Arrays that fit in memory (npz, pt, synthetic, csv, parquet,
or a mapping returned by a data function) are gathered by index, on the GPU when
they fit there. A torch ``Dataset`` (an image folder, or one a data function or
class returns; items: mappings of name -> tensor, or tuples) goes through a
DataLoader with worker processes, each item checked as it is collated. Both are
batched from the same per-epoch order, a permutation seeded by (seed, epoch) and
nothing else.

The modules: ``reader`` (load_split, which reads each kind of source: ``files``,
``tabular``, ``images`` with ``transforms``, ``functions``), ``samples`` (what a
split holds), ``splits`` (the seeded split and split.json), ``batches`` and
``items`` (batching, seeding and checking a Dataset's items).
"""

from __future__ import annotations

from .batches import GPU_RESIDENT_BYTES, Batch, Batches, batch_seed, epoch_order
from .files import SYNTHETIC_MAX_BYTES, SYNTHETIC_SAMPLES
from .images import ImageFolder
from .items import ItemError
from .reader import load_split
from .samples import DatasetSamples, LabelRange, Split, TensorSamples
from .splits import SPLIT_FILE, split_record, write_split

__all__ = [
    "GPU_RESIDENT_BYTES",
    "SPLIT_FILE",
    "SYNTHETIC_MAX_BYTES",
    "SYNTHETIC_SAMPLES",
    "Batch",
    "Batches",
    "DatasetSamples",
    "ImageFolder",
    "ItemError",
    "LabelRange",
    "Split",
    "TensorSamples",
    "batch_seed",
    "epoch_order",
    "load_split",
    "split_record",
    "write_split",
]
