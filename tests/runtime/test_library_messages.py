"""Errors raised from Python speak of arguments (``overwrite=True``); the command line
prints its own form of them, naming its flags (``--overwrite``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import nnspec
from nnspec.runtime import checkpoint
from nnspec.runtime.distributed import Cluster, World
from nnspec.runtime.errors import TrainError
from tests.runtime.conftest import TINY_MODEL


def test_a_changed_model_cannot_resume() -> None:
    old = nnspec.loads(TINY_MODEL)
    new = nnspec.loads(TINY_MODEL, params={"width": 8})
    saved = {
        "spec_hash": checkpoint.spec_hash(old),
        "params": old.params,
        "model": old.build().state_dict(),
    }
    with pytest.raises(TrainError) as info:
        checkpoint.check_resumable(saved, new, new.build(), Path("last.pt"))
    assert str(info.value).endswith("new run (another out_dir, or overwrite=True)")
    assert "--" not in str(info.value)
    assert info.value.for_command_line().endswith("new run (--out DIR, or --overwrite)")


def test_fsdp_does_not_resume_from_one_file(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"")
    run = SimpleNamespace(last=tmp_path / "last.dcp", checkpoints=tmp_path)
    cluster = Cluster("fsdp", world=World(rank=0, local_rank=0, size=2))
    with pytest.raises(TrainError) as info:
        cluster.read_checkpoint(run)  # type: ignore[arg-type]
    assert str(info.value).endswith(
        "resume with strategy ddp, or start over with overwrite=True"
    )
    assert info.value.for_command_line().endswith("start over with --overwrite")
