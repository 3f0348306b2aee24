"""Checkpoints kept besides last.pt and best.pt: the k best, one per epoch end, and
the retention that deletes only what nnspec wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from nnspec.runtime import Trainer, TrainError, load_checkpoint
from tests.runtime.conftest import TINY_TRAIN, records

# 11 steps an epoch, 3 epochs; a validation every 3 steps and at each epoch end.
KEEP = TINY_TRAIN.replace(
    "  steps: 12\n",
    "  epochs: 3\n  val_every: 3\n"
    "  checkpoints: {keep_best: 3, every_epoch: true, keep_last: 2}\n",
)


def fit(spec: Path, out: Path, **kwargs: Any):
    return Trainer(spec, out, progress=False, **kwargs).fit()


def files(run: Path) -> set[str]:
    return {p.name for p in (run / "checkpoints").iterdir()}


def three_best(run: Path) -> list[int]:
    vals = [r for r in records(run) if "val_loss" in r]
    return [r["step"] for r in sorted(vals, key=lambda r: r["val_loss"])[:3]]


def test_the_k_best_and_the_last_epochs_are_kept(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(KEEP), out)
    best = three_best(out)
    assert files(out) == {
        "last.pt",
        "best.pt",
        "epoch-2.pt",
        "epoch-3.pt",
        *(f"best-step{s}.pt" for s in best),
    }
    for step in best:
        saved = load_checkpoint(out / "checkpoints" / f"best-step{step}.pt")
        assert saved["step"] == step
    assert load_checkpoint(out / "checkpoints" / "epoch-2.pt")["step"] == 22
    assert load_checkpoint(out / "checkpoints" / "epoch-3.pt")["step"] == 33
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["kept"]["epochs"] == [[2, 22], [3, 33]]
    assert [s for s, _ in last["kept"]["best"]] == best


def test_the_kept_set_is_the_same_after_a_resume(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(KEEP)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    fit(spec, straight)
    fit(spec, stopped, overrides={"epochs": 2})
    fit(spec, stopped, resume=True)
    assert files(stopped) == files(straight)
    for name in files(straight):
        a = load_checkpoint(straight / "checkpoints" / name)
        b = load_checkpoint(stopped / "checkpoints" / name)
        assert a["step"] == b["step"], name
        assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_a_copy_lost_to_a_kill_is_made_on_resume(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(KEEP.replace("keep_last: 2", "keep_last: 1"))
    out = tmp_path / "run"
    fit(spec, out, overrides={"epochs": 1})
    # As if killed between writing last.pt (step 11, an epoch end) and copying it.
    (out / "checkpoints" / "epoch-1.pt").unlink()
    fit(spec, out, resume=True)
    assert "epoch-1.pt" not in files(out)  # recopied at the resume, then dropped
    assert {"epoch-3.pt"} == {n for n in files(out) if n.startswith("epoch-")}


def test_a_restored_copy_has_the_checkpoints_step(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = tiny_spec(KEEP)
    fit(spec, out, overrides={"epochs": 1})
    (out / "checkpoints" / "epoch-1.pt").unlink()
    fit(spec, out, resume=True, overrides={"epochs": 1})  # nothing left to train
    assert load_checkpoint(out / "checkpoints" / "epoch-1.pt")["step"] == 11


def test_files_nnspec_did_not_write_stay(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(KEEP)
    out = tmp_path / "run"
    fit(spec, out, overrides={"epochs": 1})
    mine = out / "checkpoints" / "notes.pt"
    mine.write_bytes(b"mine")
    fit(spec, out, overwrite=True, overrides={"epochs": 1})
    assert mine.read_bytes() == b"mine"
    # A link at a name nnspec writes is refused before anything is written.
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"x")
    (out / "checkpoints" / "best-step1.pt").symlink_to(outside)
    with pytest.raises(TrainError, match=r"best-step1\.pt is a symbolic link"):
        fit(spec, out, resume=True)
    assert outside.read_bytes() == b"x"


def test_overwrite_removes_the_kept_checkpoints(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(KEEP), out, overrides={"epochs": 1})
    assert any(n.startswith("best-step") for n in files(out))
    fit(tiny_spec(), out, overwrite=True, overrides={"steps": 2})
    assert files(out) == {"last.pt", "best.pt"}
