"""The samples of one split: tensors in memory, or a torch Dataset's items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..errors import TrainError

__all__ = ["DatasetSamples", "LabelRange", "Samples", "Split", "TensorSamples"]


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
        *,
        items: Sequence[str] = (),
        shapes: Mapping[str, tuple[int, ...]] | None = None,
        evaluation: Dataset | None = None,
    ) -> None:
        self.dataset = dataset
        self.dtypes = dict(dtypes)
        self.labels = list(labels)
        self.where = where
        # The names of a tuple item's positions (default: the names in order).
        self.items = tuple(items) or tuple(self.dtypes)
        # Each name's shape in an item: every item is checked against it.
        self.shapes = dict(shapes) if shapes is not None else None
        # The same items without random augmentation, for validation and test.
        self.evaluation = evaluation

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _with(self, dataset: Dataset, evaluation: Dataset | None) -> DatasetSamples:
        return DatasetSamples(
            dataset,
            self.dtypes,
            self.labels,
            self.where,
            items=self.items,
            shapes=self.shapes,
            evaluation=evaluation,
        )

    def subset(self, index: Tensor) -> DatasetSamples:
        rows = index.tolist()
        evaluation = self.evaluation
        return self._with(
            Subset(self.dataset, rows),
            Subset(evaluation, rows) if evaluation is not None else None,
        )

    def for_evaluation(self) -> DatasetSamples:
        """The samples as validation and test see them: no random augmentation."""
        if self.evaluation is None:
            return self
        return self._with(self.evaluation, None)

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
    """The training samples and, when the run validates, the validation samples;
    the test samples, when the spec holds some out. ``held_out`` records where
    validation and test samples came from (see splits.split_record)."""

    train: Samples
    val: Samples | None
    test: Samples | None = None
    held_out: dict[str, Any] = field(default_factory=dict)
