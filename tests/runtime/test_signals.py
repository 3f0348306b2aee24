"""Real processes: killed with SIGKILL at any moment, or stopped with Ctrl-C, a run
resumes from its last checkpoint and goes on exactly as if nothing had happened."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nnspec.runtime import Trainer, load_checkpoint
from tests.runtime.conftest import TINY_TRAIN, train_losses

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals (SIGKILL, SIGINT)"
)


def start(spec: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nnspec", "train", str(spec), "--out", str(out), *args],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def logged_steps(out: Path) -> int:
    try:
        return len((out / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def wait_for_progress(
    process: subprocess.Popen[str], out: Path, lines: int, timeout: float = 120
) -> None:
    """Until the run has logged `lines` lines and written a checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            pytest.fail(
                f"the run ended early ({process.returncode}):\n{stdout}{stderr}"
            )
        if logged_steps(out) >= lines and (out / "checkpoints" / "last.pt").exists():
            return
        time.sleep(0.02)
    process.kill()
    pytest.fail("the run made no progress")


def test_sigkill_at_any_moment_then_resume(tiny_spec, tmp_path: Path) -> None:
    # A checkpoint after every step: most kills land in or near a write.
    spec = tiny_spec(
        TINY_TRAIN.replace("steps: 12", "steps: 150") + "  checkpoint_every: 1\n"
    )
    out = tmp_path / "killed"
    for _ in range(2):
        process = start(spec, out, "--resume", "--overwrite")  # resume or start
        # A random step (5 to 30 lines on), and a random moment within it.
        wait_for_progress(process, out, logged_steps(out) + random.randint(5, 30))
        time.sleep(random.uniform(0.0, 0.02))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the run ended before the kill"
        saved = load_checkpoint(out / "checkpoints" / "last.pt")  # never half-written
        assert all(torch.isfinite(v).all() for v in saved["model"].values())

    result = Trainer(spec, out, resume=True, progress=False).fit()
    assert result.step == 150
    assert not list((out / "checkpoints").glob(".*partial"))  # leftovers removed

    straight = tmp_path / "straight"
    Trainer(spec, straight, overrides={"checkpoint_every": None}, progress=False).fit()
    assert train_losses(out) == train_losses(straight)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("steps: 12", "steps: 100000"))
    out = tmp_path / "stopped"
    process = start(spec, out)
    wait_for_progress(process, out, 3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    line = next(x for x in stdout.splitlines() if x.startswith("stopped by Ctrl-C"))
    step = int(line.split(" at step ")[1].split(":")[0])
    assert line == (
        f"stopped by Ctrl-C at step {step}: saved {out / 'checkpoints' / 'last.pt'}; "
        "continue with --resume"
    )
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == step

    end = step + 4
    Trainer(spec, out, resume=True, overrides={"steps": end}, progress=False).fit()
    straight = tmp_path / "straight"
    Trainer(spec, straight, overrides={"steps": end}, progress=False).fit()
    assert train_losses(out) == train_losses(straight)
    assert list(train_losses(out)) == list(range(1, end + 1))
