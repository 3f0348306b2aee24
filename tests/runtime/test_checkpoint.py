"""Checkpoints: atomic writes, weights_only loading, random states, model identity."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import nnspec
from nnspec.runtime import TrainError
from nnspec.runtime import checkpoint as ckpt
from tests.runtime.conftest import TINY_MODEL, TINY_TRAIN


def state(value: float) -> dict:
    return {"format": ckpt.CHECKPOINT_FORMAT, "model": {"w": torch.full((3,), value)}}


def test_a_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(
        {**state(1.0), "rng": ckpt.rng_state(), "best": None, "step": 3}, path
    )
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["model"]["w"], torch.ones(3))
    assert loaded["step"] == 3
    assert ckpt.load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_the_file_is_fsynced_before_it_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        ckpt.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1]
    )
    monkeypatch.setattr(
        ckpt.os,
        "replace",
        lambda a, b: (events.append(f"replace {Path(b).name}"), real_replace(a, b))[1],
    )
    ckpt.save_checkpoint(state(1.0), tmp_path / "last.pt")
    # The file's data, then the rename, then the directory entry.
    assert events == ["fsync", "replace last.pt", "fsync"]


def test_a_write_that_fails_midway_leaves_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(state(1.0), path)

    def torn_save(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a zip archive")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(
        ckpt.TrainError,
        match=r"cannot write .*last\.pt: No space left on device \(the previous one",
    ):
        ckpt.save_checkpoint(state(2.0), path)
    monkeypatch.undo()
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    ckpt.save_checkpoint(state(1.0), tmp_path / "last.pt")
    leftover = tmp_path / ".last.pt.4242.partial"
    leftover.write_bytes(b"PK\x03\x04 torn")
    assert ckpt.remove_partial(tmp_path) == [leftover]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_copy_is_atomic_and_identical(tmp_path: Path) -> None:
    ckpt.save_checkpoint(state(5.0), tmp_path / "last.pt")
    ckpt.copy_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(TrainError, match="is not a checkpoint of this version"):
        ckpt.load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(TrainError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(path)


def test_random_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    ckpt.save_checkpoint({**state(0.0), "rng": ckpt.rng_state()}, tmp_path / "c.pt")
    first = (torch.rand(4), random.random(), np.random.rand(2))
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    ckpt.restore_rng(ckpt.load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(4), random.random(), np.random.rand(2))
    assert torch.equal(first[0], again[0])
    assert first[1] == again[1]
    assert np.array_equal(first[2], again[2])


def test_the_spec_hash_follows_the_model_not_the_text_or_the_train_section() -> None:
    base = nnspec.loads(TINY_MODEL + TINY_TRAIN)
    commented = nnspec.loads(
        "# a comment\n" + TINY_MODEL.replace("name: Tiny", "name: Tiny  # class")
    )
    other_train = nnspec.loads(TINY_MODEL + TINY_TRAIN.replace("steps: 12", "steps: 5"))
    wider = nnspec.loads(TINY_MODEL, params={"width": 32})
    other_layer = nnspec.loads(TINY_MODEL.replace("p: 0.2", "p: 0.3"))
    assert ckpt.spec_hash(base) == ckpt.spec_hash(commented)
    assert ckpt.spec_hash(base) == ckpt.spec_hash(other_train)
    assert ckpt.spec_hash(wider) != ckpt.spec_hash(base)
    assert ckpt.spec_hash(other_layer) != ckpt.spec_hash(base)


def test_a_checkpoint_of_another_model_is_refused_with_the_difference() -> None:
    old = nnspec.loads(TINY_MODEL)
    new = nnspec.loads(TINY_MODEL, params={"width": 8})
    saved = {
        "spec_hash": ckpt.spec_hash(old),
        "params": old.params,
        "model": old.build().state_dict(),
    }
    ckpt.check_resumable(saved, old, old.build(), Path("last.pt"))  # same model: fine
    with pytest.raises(TrainError) as info:
        ckpt.check_resumable(saved, new, new.build(), Path("last.pt"))
    message = str(info.value)
    assert message.startswith(
        "cannot resume from last.pt: the model differs from the one it was trained "
        "with (param width: 16 then, 8 now; head.weight: [3, 16] then, [3, 8] now;"
    )
    dropout = nnspec.loads(TINY_MODEL.replace("p: 0.2", "p: 0.3"))
    with pytest.raises(
        TrainError, match=r"\(the layers, init or freeze rules changed\)"
    ):
        ckpt.check_resumable(saved, dropout, dropout.build(), Path("last.pt"))
