"""TensorBoard's writer opens on a thread of its own while the first steps run:
what it writes is unchanged, a failure to open it still stops the run, and no
fork happens while it is half open."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nnspec.runtime import Trainer
from nnspec.runtime import logs as run_logs
from tests.runtime.conftest import records


def test_a_writer_that_cannot_open_stops_the_run(
    tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(run, purge_step):
        raise OSError("no room for the event file")

    monkeypatch.setattr(run_logs, "_summary_writer", refuse)
    out = tmp_path / "run"
    trainer = Trainer(tiny_spec(), out, overrides={"steps": 3}, progress=False)
    with pytest.raises(OSError, match="no room for the event file"):
        trainer.fit()
    # The first logged step is where the writer was needed: nothing after it ran.
    assert [r["step"] for r in records(out)] == [1]


def test_the_writer_is_opened_off_the_main_thread(
    tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened_on = []
    real = run_logs._summary_writer

    def record_thread(run, purge_step):
        opened_on.append(threading.current_thread())
        return real(run, purge_step)

    monkeypatch.setattr(run_logs, "_summary_writer", record_thread)
    out = tmp_path / "run"
    Trainer(tiny_spec(), out, overrides={"steps": 2}, progress=False).fit()
    assert len(opened_on) == 1 and opened_on[0] is not threading.main_thread()
    assert list(out.glob("events.out.tfevents.*"))


def test_a_fork_waits_for_an_opening_to_finish() -> None:
    release = threading.Event()
    opening = run_logs._Opening(lambda: release.wait(5) and "writer")
    assert opening._thread.is_alive()
    threading.Timer(0.05, release.set).start()
    run_logs._finish_openings()  # what runs before os.fork
    assert not opening._thread.is_alive()
    assert opening.get() == "writer"
