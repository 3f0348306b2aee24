"""Reading the spec's sources into the samples of each split, checked: names,
shapes and dtypes against the model's inputs and the losses' targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...spec.train import SourceSpec
from ..settings import Settings
from .base import first_line, item_names
from .files import SYNTHETIC_SAMPLES, FileSources
from .functions import FUNCTION, FunctionSources
from .images import ImageFolder, ImageSources
from .items import ItemError, item_arrays
from .samples import DatasetSamples, Samples, Split, TensorSamples
from .splits import fraction_split, held_out
from .tabular import TableSources

__all__ = ["load_split"]

#: The kinds of a source mapping, and the keys that go with each.
KINDS = ("npz", "pt", "synthetic", "csv", "parquet", "images", "function")
COMPANIONS = {
    "features": ("csv", "parquet"),
    "target": ("csv", "parquet"),
    "target_dtype": ("csv", "parquet"),
    "masks": ("images",),
    "transforms": ("images",),
    "args": ("function",),
    "paths": ("function",),
    "items": ("csv", "parquet", "images", "function"),
}


def load_split(settings: Settings, allow_imports: frozenset[str]) -> Split:
    """Read the sources, check names and shapes, split. Validation and test
    samples are seen without random augmentation."""
    data = settings.train.data
    reader = Reader(settings, allow_imports)
    source = ("data", "source")
    train, val, items = reader.read(data.source, source, functions=True)
    val_key = source
    if data.val is not None:
        if val is not None:
            raise settings.error(
                ("data", "val"),
                "the data function returns validation data already; drop val",
                key=True,
            )
        val_key = ("data", "val")
        val, _, val_items = reader.read(data.val, val_key, functions=False)
    else:
        val_items = items
    test = test_items = None
    if data.test is not None:
        test, _, test_items = reader.read(data.test, ("data", "test"), functions=False)
    train_samples = reader.samples(train, source, "training", items)
    val_samples = (
        reader.samples(val, val_key, "val", val_items) if val is not None else None
    )
    test_samples = (
        reader.samples(test, ("data", "test"), "test", test_items or ())
        if test is not None
        else None
    )
    if data.val_fraction is not None and val_samples is not None:
        raise settings.error(
            ("data", "val_fraction"),
            "the data function returns validation data already; drop val_fraction"
            if data.val is None
            else "give val or val_fraction, not both",
            key=True,
        )
    if data.test_fraction is not None and test_samples is not None:
        raise settings.error(
            ("data", "test_fraction"), "give test or test_fraction, not both", key=True
        )
    val_index = test_index = None
    if data.val_fraction is not None or data.test_fraction is not None:
        whole = train_samples
        train_samples, val_index, test_index = fraction_split(
            whole, data.val_fraction, data.test_fraction, settings.train.seed, settings
        )
        if val_index is not None:
            val_samples = whole.subset(val_index)
        if test_index is not None:
            test_samples = whole.subset(test_index)
    val_samples = _evaluated(val_samples)
    test_samples = _evaluated(test_samples)
    record: dict[str, Any] = {
        "source_samples": len(train_samples)
        + sum(len(i) for i in (val_index, test_index) if i is not None),
        "val": held_out(val_index, val_samples, ".".join(val_key)),
        "test": held_out(test_index, test_samples, "data.test"),
    }
    if isinstance(train, ImageFolder) and train.classes is not None:
        record["classes"] = train.classes  # class index -> folder name
    return Split(train_samples, val_samples, test_samples, record)


def _evaluated(samples: Samples | None) -> Samples | None:
    if isinstance(samples, DatasetSamples):
        return samples.for_evaluation()
    return samples


class Reader(FileSources, TableSources, ImageSources, FunctionSources):
    """Reads each kind of source (the mixins) and checks what it holds."""

    def read(
        self, source: SourceSpec | str, path: tuple, *, functions: bool
    ) -> tuple[Any, Any, tuple[str, ...]]:
        """(train, val, item names) of a source; val is None except from a data
        function."""
        if isinstance(source, str):
            if source == "synthetic":
                return self.synthetic(SYNTHETIC_SAMPLES, path), None, ()
            if functions and FUNCTION.match(source):
                train, val = self.function(source, path)
                return train, val, ()
            allowed = (
                "'synthetic' or 'package.module:function'"
                if functions
                else "'synthetic' ({npz: file} and {pt: file} are mappings)"
            )
            raise self.error(path, f"data source {source!r}: expected {allowed}")
        given = [k for k in KINDS if getattr(source, k) is not None]
        if len(given) != 1:
            raise self.error(
                path,
                f"a data source has exactly one of {', '.join(KINDS)}; "
                + (f"received {', '.join(given)}" if given else "received none"),
            )
        kind = given[0]
        for key in COMPANIONS:
            if key not in source.model_fields_set:
                continue
            kinds = COMPANIONS[key]
            if kind not in kinds:
                raise self.error(
                    (*path, key),
                    f"{key} goes with a {' or '.join(kinds)} source, not {kind}",
                    key=True,
                )
        where = (*path, kind)
        if kind == "synthetic":
            n = source.synthetic or SYNTHETIC_SAMPLES
            return self.synthetic(n, where), None, ()
        if kind == "function":
            assert source.function is not None
            items = item_names(self, source.items, path)
            train, val = self.function(source.function, path, source.args, source.paths)
            if val is not None and not functions:
                raise self.error(
                    (*path, "function"),
                    f"{source.function!r} returns (train, val); here one split is "
                    "wanted: a Dataset or a mapping",
                )
            return train, val, items
        if kind in ("csv", "parquet"):
            return self.table(source, path, kind), None, ()
        if kind == "images":
            return self.image_folder(source, path), None, ()
        file = self.resolve(getattr(source, kind))
        if kind == "npz":
            return self.npz(file, where), None, ()
        return self.pt(file, where), None, ()

    def samples(
        self, raw: Any, path: tuple, role: str, items: tuple[str, ...] = ()
    ) -> Samples:
        """The samples of a source, checked: names, shapes, dtypes, and (for
        arrays in memory, at once) the range of class labels."""
        if isinstance(raw, Mapping):
            samples = self.tensor_samples(raw, path)
            samples.where = ".".join(("train", *path))
            for label in self.label_ranges():
                found = label.first_bad(samples.arrays[label.target])
                if found is not None:
                    what = {"val": "validation data", "test": "test data"}.get(
                        role, "data"
                    )
                    problem = label.problem(found[1], found[0])
                    raise self.error(path, f"the {what}'s {problem}")
            return samples
        if isinstance(raw, Dataset) or (
            hasattr(raw, "__getitem__") and hasattr(raw, "__len__")
        ):
            samples_ = self.dataset_samples(raw, path, items or tuple(self.names))
            if isinstance(raw, ImageFolder):
                samples_.evaluation = raw.for_evaluation()
            role_name = {"val": "validation", "test": "test"}.get(role, "training")
            samples_.where = f"the {role_name} dataset of {self.describe(path)}"
            return samples_
        raise self.error(
            path,
            f"data must be a mapping of name -> tensor or a torch Dataset, "
            f"received {type(raw).__name__}",
        )

    def describe(self, path: tuple) -> str:
        """A source in messages: its function, folder or key."""
        data = self.settings.train.data
        source = getattr(data, path[-1]) if path[:1] == ("data",) else None
        if isinstance(source, str):
            return source
        if isinstance(source, SourceSpec):
            if source.function is not None:
                return source.function
            if source.images is not None:
                return f"images {source.images}"
        return ".".join(("train", *path))

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

    def dataset_samples(
        self, dataset: Any, path: tuple, items: tuple[str, ...]
    ) -> DatasetSamples:
        """A Dataset's samples, its first item checked here; every item is checked
        the same way as it is collated (items.ItemCollate)."""
        if len(dataset) == 0:
            raise self.error(path, "the dataset holds no samples")
        try:
            first = dataset[0]
        except ItemError as exc:
            raise self.error(path, f"item 0: {exc}") from None
        values = item_arrays(first, self.names, items)
        if isinstance(values, str):
            raise self.error(path, f"the dataset's item 0: {values}")
        dtypes, shapes = {}, {}
        for name in self.names:
            one = self.tensor(name, values[name], path, item=True)
            dtypes[name] = self.convert(name, one.unsqueeze(0), path).dtype
            shapes[name] = tuple(one.shape)
        return DatasetSamples(
            dataset, dtypes, self.label_ranges(), items=items, shapes=shapes
        )

    def tensor(
        self, name: str, value: Any, path: tuple, *, item: bool = False
    ) -> Tensor:
        """A data array as a dense tensor of numbers (of one sample, for ``item``)."""
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise self.error(
                path, f"array {name!r} cannot be made a tensor: {first_line(exc)}"
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
