"""Data sources, the seeded split, and batches that can start inside an epoch."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import nnspec
from nnspec.runtime.data import (
    Batches,
    DatasetSamples,
    TensorSamples,
    epoch_order,
    load_split,
)
from nnspec.runtime.settings import resolve_settings
from tests.runtime.conftest import TINY_MODEL, write_data
from tests.runtime.data_functions import DictDataset

CPU = torch.device("cpu")


def split_of(tmp_path: Path, data: str, allow: tuple[str, ...] = ()):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(
        TINY_MODEL
        + "train:\n"
        + textwrap.indent(
            textwrap.dedent(data)
            + "loss: {logits: {op: CrossEntropyLoss, target: label}}\n",
            "  ",
        ),
        encoding="utf-8",
    )
    settings = resolve_settings(nnspec.load(spec_path))
    return load_split(settings, frozenset(allow))


def split_error(tmp_path: Path, data: str, allow: tuple[str, ...] = ()) -> str:
    """'line:column: message' of the SpecError (the spec's path is a tmp path)."""
    with pytest.raises(nnspec.SpecError) as info:
        split_of(tmp_path, data, allow)
    error = info.value
    assert error.path == str(tmp_path / "tiny.yaml")
    return f"{error.line}:{error.column}: {error.message}"


def test_npz_arrays_are_read_by_name_and_cast(tmp_path: Path) -> None:
    x = np.arange(30, dtype=np.float64).reshape(5, 6)
    np.savez(tmp_path / "d.npz", x=x, label=np.array([0, 1, 2, 1, 0], dtype=np.int32))
    split = split_of(tmp_path, "data: {source: {npz: d.npz}}\n")
    assert isinstance(split.train, TensorSamples)
    assert split.val is None
    assert split.train.arrays["x"].dtype == torch.float32  # the input's dtype
    assert torch.equal(split.train.arrays["x"], torch.from_numpy(x).float())
    assert split.train.arrays["label"].dtype == torch.int64  # class indices
    assert split.train.arrays["label"].tolist() == [0, 1, 2, 1, 0]


def test_a_missing_array_is_named_with_what_there_is(tmp_path: Path) -> None:
    torch.save({"x": torch.zeros(4, 6), "y": torch.zeros(4)}, tmp_path / "d.pt")
    message = split_error(tmp_path, "data: {source: {pt: d.pt}}\n")
    assert message == (
        "14:18: the data has no array 'label' (the loss target); it has: x, y"
    )


def test_samples_must_have_the_declared_input_shape(tmp_path: Path) -> None:
    torch.save({"x": torch.zeros(4, 5), "label": torch.zeros(4)}, tmp_path / "d.pt")
    message = split_error(tmp_path, "data: {source: {pt: d.pt}}\n")
    assert message == (
        "14:18: array 'x' holds samples of shape [5]; input 'x' is declared [6]"
    )


def test_a_missing_file_is_reported_at_its_key(tmp_path: Path) -> None:
    message = split_error(tmp_path, "data:\n  source: {npz: nowhere.npz}\n")
    assert message == (f"15:19: no such data file: {tmp_path / 'nowhere.npz'}")


def test_val_fraction_is_a_seeded_disjoint_split(tmp_path: Path) -> None:
    write_data(tmp_path / "data.pt", n=50)
    data = "data: {source: {pt: data.pt}, val_fraction: 0.2}\n"
    split = split_of(tmp_path, data)
    again = split_of(tmp_path, data)
    everything = torch.load(tmp_path / "data.pt")["x"]
    train_x, val_x = split.train.arrays["x"], split.val.arrays["x"]
    assert (len(train_x), len(val_x)) == (40, 10)
    assert torch.equal(val_x, again.val.arrays["x"])
    together = torch.cat([train_x, val_x])
    assert sorted(map(tuple, together.tolist())) == sorted(
        map(tuple, everything.tolist())
    )
    other_seed = split_of(tmp_path, data.replace("}\n", "}\nseed: 1\n", 1))
    assert not torch.equal(val_x, other_seed.val.arrays["x"])


def test_synthetic_data_fits_the_inputs_and_the_losses(tmp_path: Path) -> None:
    split = split_of(tmp_path, "data: {source: {synthetic: 30}}\n")
    assert split.train.arrays["x"].shape == (30, 6)
    label = split.train.arrays["label"]
    assert label.shape == (30,) and label.dtype == torch.int64
    assert label.min() >= 0 and label.max() < 3  # the head has 3 classes


def test_a_data_function_needs_its_package_allowed(tmp_path: Path) -> None:
    data = "data: {source: 'tests.runtime.data_functions:as_tensors'}\n"
    message = split_error(tmp_path, data)
    assert message.startswith(
        "14:18: data function 'tests.runtime.data_functions:"
        "as_tensors' imports package 'tests', which is not allowed; allow it with "
        "--allow-import tests"
    )
    split = split_of(tmp_path, data, allow=("tests",))
    assert len(split.train) == 40 and split.val is None
    wrong = "data: {source: 'tests.runtime.data_functions:not_a_pair'}\n"
    assert "must return (train, val)" in split_error(tmp_path, wrong, ("tests",))


def test_a_dataset_from_a_function_is_batched_like_tensors(tmp_path: Path) -> None:
    data = "data: {source: 'tests.runtime.data_functions:as_dataset'}\n"
    split = split_of(tmp_path, data, allow=("tests",))
    assert isinstance(split.train, DatasetSamples) and len(split.val) == 8
    arrays = {k: v for k, v in split.train.dataset.arrays.items()}
    from_dataset = list(Batches(split.train, 8, CPU, seed=3).epoch(2, shuffle=True))
    from_tensors = list(
        Batches(TensorSamples(arrays), 8, CPU, seed=3).epoch(2, shuffle=True)
    )
    assert len(from_dataset) == len(from_tensors) == 5
    for a, b in zip(from_dataset, from_tensors):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["label"], b["label"])


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    first = epoch_order(20, epoch=0, seed=0, shuffle=True)
    assert sorted(first.tolist()) == list(range(20))
    assert torch.equal(first, epoch_order(20, epoch=0, seed=0, shuffle=True))
    assert not torch.equal(first, epoch_order(20, epoch=1, seed=0, shuffle=True))
    assert not torch.equal(first, epoch_order(20, epoch=0, seed=1, shuffle=True))
    assert epoch_order(5, epoch=3, seed=0, shuffle=False).tolist() == [0, 1, 2, 3, 4]


def samples(n: int) -> TensorSamples:
    return TensorSamples(
        {"x": torch.arange(n).float().unsqueeze(1), "i": torch.arange(n)}
    )


def test_an_epoch_has_full_batches_and_can_start_at_any_sample() -> None:
    batches = Batches(samples(21), 4, CPU, seed=5)
    whole = [b["i"] for b in batches.epoch(1, shuffle=True)]
    assert len(whole) == 5 and all(len(b) == 4 for b in whole)  # 21 // 4; 1 left out
    order = epoch_order(21, epoch=1, seed=5, shuffle=True)
    assert torch.equal(torch.cat(whole), order[:20])
    rest = [b["i"] for b in batches.epoch(1, shuffle=True, start=12)]  # 3 batches in
    assert len(rest) == 2
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[3:]))
    # From a sample between batches (a run resumed with another batch size).
    odd = [b["i"] for b in batches.epoch(1, shuffle=True, start=6)]
    assert [b.tolist() for b in odd] == [order[i : i + 4].tolist() for i in (6, 10, 14)]


def test_evaluation_batches_cover_every_sample_once_with_one_shape() -> None:
    batches = list(Batches(samples(10), 4, CPU).padded())
    assert [real for _, real in batches] == [4, 4, 2]
    assert all(len(b["i"]) == 4 for b, _ in batches)  # the last one padded
    seen = torch.cat([b["i"][:real] for b, real in batches])
    assert seen.tolist() == list(range(10))


def test_dataset_items_of_another_kind_are_refused_at_the_source(
    tmp_path: Path,
) -> None:
    class Arrays(DictDataset):
        def __getitem__(self, i: int):  # type: ignore[override]
            return self.arrays["x"][i]

    from tests.runtime import data_functions

    original = data_functions.as_dataset
    data_functions.as_dataset = lambda: (Arrays(data_functions._arrays()), None)
    try:
        data = "data: {source: 'tests.runtime.data_functions:as_dataset'}\n"
        message = split_error(tmp_path, data, ("tests",))
    finally:
        data_functions.as_dataset = original
    assert message == (
        "14:18: the dataset's item 0: it is a Tensor; items are mappings of name -> "
        "tensor or tuples (name their positions with the source's items:)"
    )
