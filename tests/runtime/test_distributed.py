"""Runs of two processes on CPU (gloo), started by torchrun or `nnspec train --nproc 2`.

Two processes with batch_size 4 train on the same global batch of 8 as one process
with batch_size 8, so their losses must agree step by step; checkpoints, resumes,
Ctrl-C and a failing rank are checked against that reference.

The machine may be loaded: timeouts are generous (they only bound a hang), a signal
is sent once both processes are training, and nothing is measured by the clock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from nnspec.cli import main
from nnspec.runtime import Trainer, TrainError, load_checkpoint
from nnspec.runtime.data import Batches, TensorSamples
from nnspec.runtime.distributed import Cluster, World
from nnspec.runtime.rundir import RunDir
from tests.conftest import ROOT
from tests.runtime.conftest import records, train_losses, write_data

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not torch.distributed.is_available(),
    reason="POSIX signals and torch.distributed with gloo",
)

SPEC = """\
nnspec: 1
name: Tiny
inputs:
  x: [6]
layers:
  - {op: Linear, name: hidden, out_features: 16}
  - ReLU
  - {op: "tests.runtime.distributed_ops:Probe"}
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head}
train:
  data:
    source: {pt: data.pt}
    batch_size: 8
    val_fraction: 0.1
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  metrics: {logits: [accuracy]}
  optimizer: {op: AdamW, lr: 0.01}
  steps: 40
  log_every: 1
"""
# 100 samples: 90 to train on, 11 steps of 8 per epoch; 10 to validate.
TWO = ["--set", "data.batch_size=4", "--allow-import", "tests", "--timeout", "300"]
# Seconds a launched run may take before the test gives up on it (a hang, not slowness).
RUN_TIMEOUT = 600


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


def assert_same_losses(run: Path, reference: Path, steps: range) -> None:
    got, want = train_losses(run), train_losses(reference)
    assert set(steps) <= set(got), f"steps logged: {sorted(got)}"
    different = {s: (got[s], want[s]) for s in steps if not close(got[s], want[s])}
    assert not different, f"step: (this run, reference): {different}"


def validations(run: Path) -> dict[int, dict[str, Any]]:
    return {r["step"]: r for r in records(run) if "val_loss" in r}


def environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def nproc(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnspec", "train", *args, "--nproc", "2"]


def torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "nnspec",
        "train",
        *args,
    ]


def launch(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a launcher. The rendezvous port torchrun's --standalone picks may be taken
    by another program before it binds it: that, and only that, is tried again."""
    for _ in range(3):
        result = subprocess.run(
            command,
            cwd=cwd,
            env=environment(**env),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        if result.returncode == 0 or not port_taken(result.stdout + result.stderr):
            break
    return result


def port_taken(output: str) -> bool:
    text = output.lower()
    return "address already in use" in text or "eaddrinuse" in text


def complete_records(run_dir: Path) -> int:
    """Metrics lines written whole so far (the last one may be half-written)."""
    try:
        return (run_dir / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    write_data(root / "data.pt")
    (root / "tiny.yaml").write_text(SPEC, encoding="utf-8")
    return root


def one_process(
    spec: Path, out: Path, *, resume: bool = False, **overrides: Any
) -> Trainer:
    trainer = Trainer(
        spec,
        out,
        overrides=overrides,
        allow_imports=["tests"],
        resume=resume,
        progress=False,
    )
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def single(workdir: Path) -> tuple[Path, Trainer]:
    """One process, batch_size 8, 40 steps."""
    out = workdir / "single"
    return out, one_process(workdir / "tiny.yaml", out)


@pytest.fixture(scope="module")
def ddp(workdir: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """Two processes (nnspec train --nproc 2), batch_size 4 each, 40 steps."""
    result = succeeded(launch(nproc("tiny.yaml", "--out", "ddp", *TWO), workdir))
    return workdir / "ddp", result


def copy_run(run: Path, name: str) -> Path:
    target = run.parent / name
    shutil.copytree(run, target)
    return target


# -- data ----------------------------------------------------------------------------


def samples(n: int) -> TensorSamples:
    return TensorSamples({"x": torch.zeros(n, 1), "i": torch.arange(n)})


@pytest.mark.parametrize("start", [0, 8, 12])
def test_ranks_split_each_batch_of_the_one_process_order(start: int) -> None:
    cpu = torch.device("cpu")
    whole = Batches(samples(37), 8, cpu, seed=1).epoch(2, shuffle=True, start=start)
    ranks = [
        Batches(samples(37), 4, cpu, seed=1, rank=r, world_size=2).epoch(
            2, shuffle=True, start=start
        )
        for r in range(2)
    ]
    pairs = list(zip(*ranks))
    expected = [b["i"].tolist() for b in whole]
    assert len(pairs) == len(expected) == (37 - start) // 8
    assert [a["i"].tolist() + b["i"].tolist() for a, b in pairs] == expected


def test_validation_batches_are_shared_out_evenly() -> None:
    cpu = torch.device("cpu")
    shares = [
        list(Batches(samples(10), 4, cpu, rank=r, world_size=2).padded())
        for r in range(2)
    ]
    # Batches of 4, 4 and 2: rank 1 gets one and a filler that counts nothing,
    # because every rank of a sharded model runs the same number of forwards.
    assert [[real for _, real in share] for share in shares] == [[4, 2], [4, 0]]
    seen = [i for share in shares for b, real in share for i in b["i"][:real].tolist()]
    assert sorted(seen) == list(range(10))


# -- DDP -----------------------------------------------------------------------------


def test_ddp_matches_one_process_with_the_same_global_batch(single, ddp) -> None:
    (reference, trainer), (run, result) = single, ddp
    assert_same_losses(run, reference, range(1, 41))
    want, got = validations(reference), validations(run)
    assert sorted(got) == sorted(want) == [11, 22, 33, 40]
    for step in want:  # every validation sample counted once, over both ranks
        assert close(got[step]["val_loss"], want[step]["val_loss"])
        assert got[step]["val_accuracy"] == want[step]["val_accuracy"]

    # Rank 0 alone logs: each step once, in the file and on the terminal.
    steps = [r["step"] for r in records(run) if "loss" in r]
    assert steps == list(range(1, 41))
    assert result.stdout.count("step 12/40  loss") == 1
    assert "2 processes (ddp, gloo); global batch 8 = 4 x 2 processes" in result.stdout
    settings = json.loads((run / "train.json").read_text())
    assert (settings["world_size"], settings["global_batch"]) == (2, 8)

    # Rank 0 wrote the whole state: the weights one process ends with.
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    one = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert (state["world_size"], state["global_batch"], state["step"]) == (2, 8, 40)
    for key, value in one["model"].items():
        torch.testing.assert_close(state["model"][key], value, rtol=1e-4, atol=1e-6)
    # Each rank's random states, for dropout: rank 1 draws its own numbers.
    ranks = state["rank_rng"]
    assert len(ranks) == 2
    assert not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    # One process is the plain path: no process group, no wrapper.
    assert trainer.model is trainer.network
    assert not torch.distributed.is_initialized()


@pytest.fixture(scope="module")
def interrupted(workdir: Path) -> tuple[Path, int]:
    """Two processes stopped by Ctrl-C (SIGINT to the launcher) mid-run."""
    out = workdir / "interrupted"
    process = subprocess.Popen(
        nproc("tiny.yaml", "--out", "interrupted", *TWO),
        cwd=workdir,
        env=environment(PROBE_SLEEP="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Signal once both processes train: rank 0 logs a step only after the step's
    # gradients were averaged over both, and 4 steps put it well past the start.
    deadline = time.monotonic() + RUN_TIMEOUT
    while complete_records(out) < 4:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(
                f"the run did not reach step 4 (status {process.returncode}):\n"
                + stdout
                + stderr
            )
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 130, stdout + stderr
    stops = [line for line in stdout.splitlines() if "stopped by Ctrl-C" in line]
    assert len(stops) == 1, stdout  # said once, by rank 0
    step = int(stops[0].split("at step ")[1].split(":")[0])
    assert 4 <= step < 40
    return out, step


def test_ctrl_c_stops_every_rank_at_one_step_with_a_checkpoint(interrupted) -> None:
    run, step = interrupted
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == step
    assert len(state["rank_rng"]) == 2
    assert max(r["step"] for r in records(run)) == step


def test_resume_with_as_many_processes_is_exact(workdir, ddp, interrupted) -> None:
    (reference, _), (stopped, step) = ddp, interrupted
    run = copy_run(stopped, "resumed_two")
    result = succeeded(
        launch(torchrun("tiny.yaml", "--out", run.name, "--resume", *TWO), workdir)
    )
    assert (
        f"resuming from {Path(run.name) / 'checkpoints' / 'last.pt'}: step {step}"
        in result.stdout
    )
    assert_same_losses(run, reference, range(step + 1, 41))


def test_resume_in_one_process_with_the_same_global_batch(ddp, interrupted) -> None:
    (reference, _), (stopped, step) = ddp, interrupted
    run = copy_run(stopped, "resumed_one")
    trainer = Trainer(
        run.parent / "tiny.yaml",
        run,
        resume=True,
        allow_imports=["tests"],
        progress=False,
    )
    assert trainer.fit().step == 40
    assert_same_losses(run, reference, range(step + 1, 41))


def test_a_failing_rank_ends_the_run_with_its_message(workdir: Path) -> None:
    result = launch(
        nproc("tiny.yaml", "--out", "failing", *TWO),
        workdir,
        PROBE_FAIL_RANK="1",
        PROBE_FAIL_AT="3",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr
    # Rank 0 was told of the failure (a PeerFailedError), rather than waiting for
    # the collectives' --timeout, which would end it with a timeout error instead.
    assert "RuntimeError: injected failure on rank 1" in err  # its traceback
    assert "error: rank 0 of 2: stopped because rank 1 failed" in err
    # The failed rank exits 1, or, when torch's process-group teardown aborts it
    # after the error was recorded, by a signal: the status is torch's to choose.
    assert re.search(
        r"error: rank 1 of 2 failed \(exit status -?[0-9]+\): "
        r"RuntimeError: injected failure on rank 1",
        err,
    ), err
    assert max(r["step"] for r in records(workdir / "failing")) == 2


# -- FSDP ----------------------------------------------------------------------------


def test_fsdp_shards_checkpoints_resumes_and_consolidates(
    workdir: Path, single, tmp_path: Path
) -> None:
    reference, _ = single
    fsdp = [*TWO, "--set", "strategy=fsdp"]
    succeeded(
        launch(
            torchrun("tiny.yaml", "--out", "fsdp", *fsdp, "--set", "steps=6"), workdir
        )
    )
    run = workdir / "fsdp"
    assert_same_losses(run, reference, range(1, 7))
    shards = run / "checkpoints" / "last.dcp"
    assert {p.name for p in shards.iterdir()} >= {
        "__0_0.distcp",
        "__1_0.distcp",
        "meta.pt",
    }
    assert not (run / "checkpoints" / "last.pt").exists()

    # One process does not resume a sharded checkpoint, and says what to do.
    with pytest.raises(TrainError, match=r"nnspec consolidate .*last\.dcp"):
        Trainer(workdir / "tiny.yaml", run, resume=True, allow_imports=["tests"]).fit()

    # Consolidated, it resumes in one process, here with a global batch of 16:
    # the first epoch (48 of 90 samples used) ends after 2 more steps, then 5 each.
    early = copy_run(run, "fsdp_consolidated")
    assert main(["consolidate", str(early / "checkpoints" / "last.dcp")]) == 0
    one_process(workdir / "tiny.yaml", early, resume=True, **{"data.batch_size": 16})
    assert [s for s in validations(early) if s > 6][:3] == [8, 13, 18]

    # The sharded run resumes with two processes as if never stopped.
    succeeded(
        launch(
            nproc("tiny.yaml", "--out", "fsdp", "--resume", *fsdp, "--set", "steps=12"),
            workdir,
        )
    )
    assert_same_losses(run, reference, range(7, 13))

    # Consolidated at step 12: the state one process has at step 12.
    out = tmp_path / "twelve.pt"
    assert main(["consolidate", str(shards), "-o", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    twelve = tmp_path / "twelve"
    one_process(workdir / "tiny.yaml", twelve, steps=12)
    want = load_checkpoint(twelve / "checkpoints" / "last.pt")
    assert state["step"] == 12 and state["format"] == want["format"]
    assert state["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]
    for key, value in want["model"].items():
        torch.testing.assert_close(state["model"][key], value, rtol=1e-4, atol=1e-6)
    for index, moments in want["optimizer"]["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(
                state["optimizer"]["state"][index][name], value, rtol=1e-4, atol=1e-7
            )


# -- the command ---------------------------------------------------------------------


def test_nproc_reports_a_spec_mistake_once_and_starts_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text(SPEC + "  strategy: fsdpp\n", encoding="utf-8")
    code = main(["train", str(spec), "--out", str(tmp_path / "run"), "--nproc", "2"])
    assert code == 2
    err = capsys.readouterr().err
    line = SPEC.count("\n") + 1
    assert err.count(f"typo.yaml:{line}:") == 1 and "fsdpp" in err
    assert not (tmp_path / "run").exists()


def test_nproc_under_torchrun_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert main(["train", str(workdir / "tiny.yaml"), "--nproc", "2"]) == 2
    assert "under torchrun leave it out" in capsys.readouterr().err


def test_consolidate_names_what_is_not_a_sharded_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["consolidate", str(tmp_path)]) == 1
    assert f"{tmp_path} is not a sharded checkpoint" in capsys.readouterr().err


def test_fsdp_does_not_take_a_one_file_checkpoint_for_a_new_run(
    single, tmp_path: Path
) -> None:
    reference, _ = single
    run = RunDir(tmp_path / "run", sharded=True)
    run.checkpoints.mkdir(parents=True)
    shutil.copy(reference / "checkpoints" / "last.pt", run.checkpoints / "last.pt")
    rank0 = Cluster("fsdp", world=World(rank=0, local_rank=0, size=2))
    with pytest.raises(TrainError, match="resume with strategy ddp"):
        rank0.read_checkpoint(run)
    assert (run.checkpoints / "last.pt").exists()


def _elastic_tripping_over_ctrl_c(config: Any) -> None:
    """What torch's elastic agent does on a Ctrl-C landing inside its bookkeeping:
    the SignalException gives way to an UnboundLocalError."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        raise SignalException("Process 1 got signal: 2", signal.SIGINT)
    finally:
        raise UnboundLocalError(
            "cannot access local variable 'start' where it is not associated with a "
            "value"
        )


@pytest.mark.parametrize("trip", ["signal", "unbound", "other"])
def test_nproc_exits_130_on_ctrl_c_whatever_elastic_raises(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trip: str
) -> None:
    import torch.distributed.run as torchrun_module
    from torch.distributed.elastic.multiprocessing.api import SignalException

    def run(config: Any) -> None:
        if trip == "signal":
            raise SignalException("Process 1 got signal: 2", signal.SIGINT)
        if trip == "unbound":
            _elastic_tripping_over_ctrl_c(config)
        raise UnboundLocalError("a bug of its own, with no signal behind it")

    monkeypatch.setattr(torchrun_module, "run", run)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the launcher sets it for its workers
    argv = ["train", str(workdir / "tiny.yaml"), "--out", str(tmp_path / "run")]
    argv += ["--nproc", "2", "--allow-import", "tests"]
    if trip == "other":  # not a Ctrl-C: not reported as one
        with pytest.raises(UnboundLocalError, match="a bug of its own"):
            main(argv)
    else:
        assert main(argv) == 130
