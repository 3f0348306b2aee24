"""What a run logs besides metrics.jsonl and the scalars: metrics.csv, the gradient
norm, TensorBoard's HParams and the model graph."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import nnspec
from nnspec.runtime import Trainer, load_checkpoint
from tests.runtime.conftest import TINY_TRAIN, records, train_losses


def fit(spec: Path, out: Path, **kwargs: Any):
    return Trainer(spec, out, progress=False, **kwargs).fit()


def csv_rows(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def same_as_jsonl(run: Path) -> None:
    header, rows = csv_rows(run)
    logged = records(run)
    assert len(rows) == len(logged)
    for row, record in zip(rows, logged):
        for key in header:
            value = record.get(key)
            if value is None:
                assert row[key] == "", (key, row)
            else:
                assert float(row[key]) == pytest.approx(value, rel=1e-12), key


def test_metrics_csv_holds_every_record_under_one_header(
    tiny_spec, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(), out)
    header, _ = csv_rows(out)
    # The first row's keys, then the validation's, added when the first one came.
    assert header == [
        "step",
        "epoch",
        "loss",
        "lr",
        "samples_per_s",
        "val_loss",
        "val_accuracy",
    ]
    same_as_jsonl(out)


def test_metrics_csv_follows_metrics_jsonl_on_resume(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("log_every: 1", "log_every: 2"))
    out = tmp_path / "run"
    fit(spec, out, overrides={"steps": 5})
    # As if killed after logging step 7, past the checkpoint of step 5.
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 7, "epoch": 1, "loss": 9.0}\n')
    with open(out / "metrics.csv", "a", encoding="utf-8") as f:
        f.write("7,1,9.0,,,,\n")
    fit(spec, out, resume=True)
    same_as_jsonl(out)
    steps = [int(r["step"]) for r in csv_rows(out)[1] if r["loss"]]
    assert steps == [2, 4, 5, 6, 8, 10, 12]


def test_csv_false_writes_none(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(TINY_TRAIN + "  log: {csv: false}\n"), out, overrides={"steps": 2})
    assert not (out / "metrics.csv").exists()


SGD_ONE_STEP = TINY_TRAIN.replace("{op: AdamW, lr: 0.01}", "{op: SGD, lr: 1.0}")


@pytest.mark.parametrize("clip", [None, 1e9])
def test_the_gradient_norm_is_that_of_the_step(
    tiny_spec, tmp_path: Path, clip: float | None
) -> None:
    # One SGD step with lr 1 moves the weights by minus the gradient: its norm is
    # the distance between the weights before and after.
    extra = "  log: {grad_norm: true}\n" + (f"  grad_clip: {clip}\n" if clip else "")
    spec = tiny_spec(SGD_ONE_STEP + extra)
    out = tmp_path / "run"
    fit(spec, out, overrides={"steps": 1})
    torch.manual_seed(0)
    before = nnspec.load(spec).build().state_dict()
    after = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    moved = math.sqrt(
        sum(float((after[k] - v).pow(2).sum()) for k, v in before.items())
    )
    [logged] = [r for r in records(out) if "loss" in r]
    assert logged["grad_norm"] == pytest.approx(moved, rel=1e-4)


def test_the_gradient_norm_is_not_logged_unless_asked(
    tiny_spec, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(TINY_TRAIN + "  grad_clip: 1.0\n"), out, overrides={"steps": 2})
    assert all("grad_norm" not in r for r in records(out))


def _events(run: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(str(run))
    events.Reload()
    return events


def test_hparams_hold_the_params_and_settings_against_the_best_value(
    tiny_spec, tmp_path: Path
) -> None:
    from tensorboard.plugins.hparams import metadata

    out = tmp_path / "run"
    fit(tiny_spec(), out)
    events = _events(out)
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["params.width"].number_value == 16
    assert start.hparams["train.optimizer.lr"].number_value == 0.01
    assert start.hparams["train.optimizer.op"].string_value == "AdamW"
    assert start.hparams["train.batch_size"].number_value == 8
    vals = [r for r in records(out) if "val_loss" in r]
    bests = [
        r
        for i, r in enumerate(vals)
        if all(r["val_loss"] < v["val_loss"] for v in vals[:i])
    ]
    scalars = events.Scalars("hparams/best_val_loss")
    assert [(e.step, e.value) for e in scalars] == [
        (r["step"], pytest.approx(r["val_loss"])) for r in bests
    ]


def test_the_model_graph_goes_to_tensorboard(tiny_spec, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_spec(TINY_TRAIN + "  log: {graph: true}\n"), out, overrides={"steps": 2})
    assert _events(out).Tags()["graph"]
    assert len(train_losses(out)) == 2


def test_a_graph_that_cannot_be_traced_is_a_note(
    tiny_spec, tmp_path: Path, monkeypatch, capsys
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    def fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("cannot trace this\nmore")

    monkeypatch.setattr(SummaryWriter, "add_graph", fails)
    out = tmp_path / "run"
    result = fit(tiny_spec(TINY_TRAIN + "  log: {graph: true}\n"), out)
    assert result.status == "completed"
    assert (
        "note: the model graph is not logged: its trace failed (cannot trace this)"
        in capsys.readouterr().out
    )
