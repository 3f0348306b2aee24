"""A run directory is data: reading one runs nothing, and nnspec writes and removes
only the files it created there, one process at a time.

Each case plants a run directory (or a folder that is not one), runs nnspec on it
and checks the exact message and exit status, that no payload ran (its marker file
is absent) and that every file that was there before is unchanged (by hash).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import nnspec
from nnspec.cli import main
from nnspec.runtime import Trainer, TrainError
from nnspec.runtime import checkpoint as ckpt
from nnspec.runtime.checkpoint import CHECKPOINT_FORMAT, spec_hash

TINY = """\
nnspec: 1
name: Tiny
inputs:
  x: [6]
layers:
  - {op: Linear, name: hidden, out_features: 8}
  - ReLU
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head}
train:
  data: {source: {synthetic: 64}, batch_size: 8}
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  optimizer: {op: SGD, lr: 0.01}
  steps: 2
  log_every: 1
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def hashes(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (not following links) -> its SHA-256."""
    found = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                found[str(path.relative_to(folder))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return found


def train(spec: Path, out: Path, *args: str) -> int:
    return main(["train", str(spec), "--out", str(out), *args])


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def make_run(spec: Path, out: Path, steps: int = 2) -> None:
    Trainer(spec, out, overrides={"steps": steps}, progress=False).fit()


# -- 1. a planted DCP index runs nothing ---------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def plant_sharded(run: Path, marker: Path) -> Path:
    """A run directory whose last.dcp holds a valid meta.pt and a .metadata that
    would create ``marker`` if it were unpickled."""
    (run / ".nnspec-run").parent.mkdir(parents=True)
    (run / ".nnspec-run").write_text('{"format": 1}\n')
    dcp = run / "checkpoints" / "last.dcp"
    dcp.mkdir(parents=True)
    ckpt.save_checkpoint({"format": CHECKPOINT_FORMAT, "step": 5}, dcp / "meta.pt")
    (dcp / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    (dcp / "__0_0.distcp").write_bytes(b"\0" * 64)
    return dcp


def test_a_planted_dcp_index_is_refused_by_consolidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    dcp = plant_sharded(tmp_path / "run", marker)
    before = hashes(tmp_path / "run")
    assert main(["consolidate", str(dcp)]) == 1
    assert error_line(capsys) == (
        f"error: cannot read sharded checkpoint {dcp}: {dcp / '.metadata'} is not "
        "DCP metadata (it refers to posix.system, which DCP metadata never holds)"
    )
    assert not marker.exists()
    assert hashes(tmp_path / "run") == before
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_planted_dcp_index_is_refused_by_resume_in_one_process(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    dcp = plant_sharded(run, marker)
    before = hashes(run)
    assert train(spec, run, "--resume") == 1
    assert error_line(capsys) == (
        f"error: cannot read sharded checkpoint {dcp}: {dcp / '.metadata'} is not "
        "DCP metadata (it refers to posix.system, which DCP metadata never holds)"
    )
    assert not marker.exists()
    after = hashes(run)
    assert {k: after[k] for k in before} == before


def test_a_dcp_index_naming_a_shard_outside_is_refused(tmp_path: Path) -> None:
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import Metadata, MetadataIndex

    from nnspec.runtime.sharded import read_index

    dcp = tmp_path / "last.dcp"
    dcp.mkdir()
    index = Metadata(
        state_dict_metadata={},
        storage_data={MetadataIndex("model.w"): _StorageInfo("../../secret", 0, 8)},
    )
    (dcp / ".metadata").write_bytes(pickle.dumps(index))
    with pytest.raises(TrainError) as info:
        read_index(dcp)
    assert str(info.value) == (
        f"cannot read sharded checkpoint {dcp}: {dcp / '.metadata'} names a shard "
        "outside the checkpoint directory ('../../secret')"
    )


def test_a_real_dcp_index_reads_back(tmp_path: Path) -> None:
    import warnings

    import torch.distributed.checkpoint as dcp

    from nnspec.runtime.sharded import _reader, read_index

    tensors = {
        "model.w": torch.arange(6.0).reshape(2, 3),
        "model.h": torch.ones(2, dtype=torch.bfloat16),
        "model.n": torch.tensor([3], dtype=torch.int64),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(tensors, storage_writer=dcp.FileSystemWriter(tmp_path), no_dist=True)
        index = read_index(tmp_path)
        assert sorted(index.state_dict_metadata) == ["model.h", "model.n", "model.w"]
        loaded = {k: torch.zeros_like(v) for k, v in tensors.items()}
        dcp.load(loaded, storage_reader=_reader(tmp_path), no_dist=True)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


# -- 2. nnspec writes only into its own run directories ------------------------------


def test_out_on_a_folder_that_is_not_a_run_is_refused(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "project"
    (out / ".cache.partial").mkdir(parents=True)
    (out / ".cache.partial" / "keep.txt").write_text("mine")
    (out / ".notes.1.partial").write_text("mine too")
    for name in ("model.py", "spec.yaml", "train.json", "metrics.jsonl"):
        (out / name).write_text(f"the user's {name}\n")
    before = hashes(out)
    expected = (
        f"error: {out} is not empty and is not a run directory of nnspec (it has no "
        ".nnspec-run file); nnspec writes only into a new or empty folder or into "
        "one of its runs: pick another --out"
    )
    for flags in ((), ("--overwrite",), ("--resume", "--overwrite")):
        assert train(spec, out, *flags) == 1
        assert error_line(capsys) == expected
        assert hashes(out) == before
        assert {p.name for p in out.iterdir()} == {  # no marker, no lock
            ".cache.partial",
            ".notes.1.partial",
            "model.py",
            "spec.yaml",
            "train.json",
            "metrics.jsonl",
        }


def test_a_new_run_directory_is_marked_and_an_empty_folder_is_taken(
    spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    make_run(spec, out)
    assert (out / ".nnspec-run").read_text().startswith('{"format": 1')
    assert (out / "checkpoints" / "last.pt").is_file()


def test_overwrite_removes_only_what_the_run_wrote(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "mine.pt").write_bytes(b"mine")
    (out / "checkpoints" / ".mine.partial").write_bytes(b"mine")
    kept = {
        k: v
        for k, v in hashes(out).items()
        if k in {"notes.txt", "checkpoints/mine.pt", "checkpoints/.mine.partial"}
    }
    Trainer(spec, out, overrides={"steps": 1}, overwrite=True, progress=False).fit()
    after = hashes(out)
    assert {k: after[k] for k in kept} == kept
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # the earlier run's records are gone


def test_overwrite_does_not_follow_a_linked_checkpoints_folder(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "last.pt").write_bytes(b"someone else's")
    (elsewhere / "best.pt").write_bytes(b"someone else's too")
    (elsewhere / ".last.pt.7.partial").write_bytes(b"and this")
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    (out / "checkpoints").rmdir()
    (out / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    before, run_before = hashes(elsewhere), hashes(out)
    assert train(spec, out, "--overwrite") == 1
    assert error_line(capsys) == (
        f"error: {out / 'checkpoints'} is a symbolic link; nnspec does not write or "
        "remove through links in a run directory: replace it with the file or "
        "folder itself, or pick another --out"
    )
    assert hashes(elsewhere) == before
    assert hashes(out) == run_before


def test_resume_without_last_checkpoint_is_an_error(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    (out / "checkpoints" / "last.pt").unlink()
    (out / "checkpoints" / "best.pt").write_bytes(b"the best weights so far")
    before = hashes(out)
    assert train(spec, out, "--resume") == 1
    last = out / "checkpoints" / "last.pt"
    assert error_line(capsys) == (
        f"error: cannot resume: {last} does not exist; start over in {out} with "
        "--overwrite (or train without --resume)"
    )
    after = hashes(out)
    assert {k: after[k] for k in before} == before


def test_resume_on_a_folder_that_is_not_a_run_is_an_error(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new"
    assert train(spec, out, "--resume") == 1
    assert error_line(capsys) == (
        f"error: nothing to resume: {out} is not a run directory of nnspec (no "
        ".nnspec-run); start a new run without --resume"
    )
    assert not out.exists()


# -- 3. one process per run directory ------------------------------------------------


def start(spec: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nnspec", "train", str(spec), "--out", str(out), *args],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lock(process: subprocess.Popen[str], lock: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended early ({process.returncode}):\n{out}{err}")
        if lock.exists() and lock.read_text().strip() == str(process.pid):
            return
        time.sleep(0.02)
    process.kill()
    pytest.fail("the run never took the lock")


@pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL")
def test_a_second_process_is_refused_while_the_first_trains(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(TINY.replace("steps: 2", "steps: 1000000"))
    out = tmp_path / "run"
    first = start(spec, out)
    try:
        wait_for_lock(first, out / ".nnspec-lock")
        expected = (
            f"error: {out} is in use: another nnspec process (pid {first.pid}) trains "
            "in it; wait for it to end (or stop it), or pick another --out"
        )
        # A second process (this one: the lock is per open file, not per process).
        for flags in ((), ("--resume",), ("--overwrite",)):
            assert train(spec, out, *flags, "--set", "steps=1") == 1
            assert error_line(capsys) == expected
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    # The kernel dropped the lock with the process: a third run takes it.
    assert train(spec, out, "--resume", "--overwrite", "--set", "steps=1") == 0
    assert "is in use" not in capsys.readouterr().err


def test_the_lock_is_released_when_a_run_ends(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    Trainer(spec, out, overrides={"steps": 3}, resume=True, progress=False).fit()
    assert (out / ".nnspec-lock").read_text() == ""


# -- 4. faults while a run writes or resumes -----------------------------------------


def test_a_checkpoint_folder_that_turns_read_only_is_one_line(
    spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    last = out / "checkpoints" / "last.pt"
    before = hashes(out / "checkpoints")

    real_open = open

    def read_only(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "w" in mode and str(file).endswith(".partial"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    # What a folder made read-only under a running process does to the next write
    # (chmod does not stop root, so the fault is put in the writer's open).
    monkeypatch.setattr(ckpt, "open", read_only, raising=False)
    assert train(spec, out, "--resume", "--set", "steps=4") == 1
    assert error_line(capsys) == (
        f"error: cannot write {last}: Permission denied (the previous one is unchanged)"
    )
    assert hashes(out / "checkpoints") == before
    assert ckpt.load_checkpoint(last)["step"] == 2


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root writes anyway"
)
def test_a_read_only_checkpoint_folder_is_one_line(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    before = hashes(out / "checkpoints")
    (out / "checkpoints").chmod(0o555)
    try:
        assert train(spec, out, "--resume", "--set", "steps=4") == 1
    finally:
        (out / "checkpoints").chmod(0o755)
    assert error_line(capsys) == (
        f"error: cannot write {out / 'checkpoints' / 'last.pt'}: Permission denied "
        "(the previous one is unchanged)"
    )
    assert hashes(out / "checkpoints") == before


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda s: s.pop("step"), "it has no 'step'"),
        (lambda s: s.update(step="2"), "'step' is a str"),
        (lambda s: s.update(window=[1, 2]), "'window' is a list"),
        (
            lambda s: s["model"].update({"head.weight": [1.0]}),
            "model entry 'head.weight' is a list, not a tensor",
        ),
        (
            lambda s: s["rng"].pop("torch"),
            "'rng' lacks the torch or Python random state",
        ),
    ],
)
def test_a_damaged_checkpoint_that_loads_is_one_line(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, problem
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    last = out / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    damage(state)
    torch.save(state, last)
    before = hashes(out)
    assert train(spec, out, "--resume", "--set", "steps=4") == 1
    assert error_line(capsys) == f"error: checkpoint {last} is damaged: {problem}"
    after = hashes(out)
    assert {k: after[k] for k in before if k.startswith("checkpoints")} == {
        k: v for k, v in before.items() if k.startswith("checkpoints")
    }


def test_a_checkpoint_whose_states_do_not_fit_is_one_line(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    last = out / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["optimizer"]["param_groups"] = []  # well-typed, but not this optimizer's
    torch.save(state, last)
    assert train(spec, out, "--resume", "--set", "steps=4") == 1
    line = error_line(capsys)
    assert line.startswith(
        f"error: checkpoint {last} is damaged: cannot restore it (ValueError: "
    )
    assert torch.load(last, weights_only=True)["optimizer"]["param_groups"] == []


# -- 5. a derived spec is saved whole --------------------------------------------------

BASE = TINY.replace("name: Tiny", "name: Base")
CHILD = """\
extends: base.yaml
name: Child
replace:
  hidden: {op: Linear, name: hidden, out_features: 5}
"""


def test_a_derived_spec_is_saved_composed_with_its_originals(
    tmp_path: Path,
) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    child = tmp_path / "child.yaml"
    child.write_text(CHILD)
    out = tmp_path / "run"
    make_run(child, out)

    saved = out / "spec.yaml"
    assert "extends" not in yaml.safe_load(saved.read_text())
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "spec.yaml").write_text(saved.read_text())  # no base beside it
    composed, original = nnspec.load(alone / "spec.yaml"), nnspec.load(child)
    assert spec_hash(composed) == spec_hash(original)
    shapes = {k: v.shape for k, v in original.build().state_dict().items()}
    assert {k: v.shape for k, v in composed.build().state_dict().items()} == shapes
    assert shapes["hidden.weight"] == torch.Size([5, 6])
    assert (out / "sources" / "0-child.yaml").read_text() == CHILD
    assert (out / "sources" / "1-base.yaml").read_text() == BASE

    # Resumed from the run's own copy, the run keeps its spec and originals.
    before = hashes(out)
    Trainer(saved, out, overrides={"steps": 3}, resume=True, progress=False).fit()
    after = hashes(out)
    for name in ("spec.yaml", "sources/0-child.yaml", "sources/1-base.yaml"):
        assert after[name] == before[name]
    # Resumed from the original, the same files are written again.
    Trainer(child, out, overrides={"steps": 4}, resume=True, progress=False).fit()
    assert hashes(out)["spec.yaml"] == before["spec.yaml"]


def test_resume_with_overwrite_starts_over_from_a_damaged_checkpoint(
    spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    make_run(spec, out)
    (out / "notes.txt").write_text("mine")
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(b"PK\x03\x04 torn")
    result = Trainer(
        spec, out, overrides={"steps": 1}, resume=True, overwrite=True, progress=False
    ).fit()
    assert result.step == 1
    assert ckpt.load_checkpoint(last)["step"] == 1
    assert (out / "notes.txt").read_text() == "mine"
