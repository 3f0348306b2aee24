"""nnspec evaluate and nnspec predict on a tiny trained run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.runtime import Trainer, load_checkpoint
from tests.runtime.conftest import TINY_MODEL, records, write_data

TRAIN = """\
train:
  data:
    source: {pt: data.pt}
    batch_size: 8
    val_fraction: 0.15
  loss: {logits: {op: CrossEntropyLoss, target: label, args: {weight: [1.0, 2.0, 1.0]}}}
  metrics: {logits: [accuracy, f1]}
  optimizer: {op: AdamW, lr: 0.01}
  steps: 12
  val_every: 4
  log_every: 4
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evaluate")
    write_data(folder / "data.pt")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY_MODEL + textwrap.dedent(TRAIN), encoding="utf-8")
    Trainer(spec, folder / "run", progress=False).fit()
    return folder / "run"


def evaluate_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def validation(run: Path, step: int) -> dict[str, float]:
    (record,) = [r for r in records(run) if "val_loss" in r and r["step"] == step]
    return {
        k.removeprefix("val_"): v for k, v in record.items() if k.startswith("val_")
    }


def trained_model(run: Path, which: str = "best") -> torch.nn.Module:
    spec = nnspec.load(run.parent / "tiny.yaml")
    model = spec.build()
    model.load_state_dict(load_checkpoint(run / "checkpoints" / f"{which}.pt")["model"])
    return model.eval()


def test_evaluate_gives_the_validation_values_of_the_run(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = load_checkpoint(run / "checkpoints" / "best.pt")["best"]
    report = evaluate_json(capsys, str(run))
    assert (report["checkpoint"], report["step"]) == ("best", best["step"])
    assert (report["data"], report["samples"]) == ("val", 15)
    assert report["metrics"] == pytest.approx(validation(run, best["step"]), rel=1e-6)
    assert report["metrics"]["loss"] == pytest.approx(best["value"], rel=1e-6)

    last = evaluate_json(capsys, str(run), "--checkpoint", "last")
    assert last["step"] == 12
    assert last["metrics"] == pytest.approx(validation(run, 12), rel=1e-6)

    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert "best checkpoint" in text and "accuracy" in text and "f1" in text


def test_evaluate_on_a_file_of_samples(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = torch.load(run.parent / "data.pt", weights_only=True)
    file = tmp_path / "more.npz"
    np.savez(file, x=data["x"][:30].numpy(), label=data["label"][:30].numpy())
    report = evaluate_json(capsys, str(run), "--data", str(file))
    with torch.no_grad():
        logits = trained_model(run)(data["x"][:30])["logits"]
    # Validation averages the batches' losses (batches of 8), weighted by samples.
    weight, labels = torch.tensor([1.0, 2.0, 1.0]), data["label"][:30]
    loss = (
        sum(
            torch.nn.functional.cross_entropy(
                logits[i : i + 8], labels[i : i + 8], weight=weight
            )
            * len(labels[i : i + 8])
            for i in range(0, 30, 8)
        )
        / 30
    )
    accuracy = (logits.argmax(1) == data["label"][:30]).float().mean()
    assert report["samples"] == 30
    assert report["metrics"]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert report["metrics"]["accuracy"] == pytest.approx(accuracy.item())


def test_evaluate_mistakes_are_one_line_errors(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"x": torch.randn(4, 6)}, tmp_path / "nolabel.pt")
    cases = {
        (str(tmp_path / "missing"),): f"error: {tmp_path / 'missing'}: no such run "
        "directory",
        (str(tmp_path),): f"error: {tmp_path} is not a run directory of nnspec train",
        (str(run), "--split", "test"): f"error: the run in {run} has no test split",
        (str(run), "--data", str(tmp_path / "nolabel.pt")): (
            f"error: {tmp_path / 'nolabel.pt'}: the data has no array 'label' (the "
            "loss target); it has: x"
        ),
    }
    for args, message in cases.items():
        capsys.readouterr()
        assert main(["evaluate", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err


def test_predict_writes_the_models_outputs(run: Path, tmp_path: Path) -> None:
    x = torch.randn(21, 6)  # three batches of 8, the last short
    torch.save({"x": x}, tmp_path / "in.pt")
    with torch.no_grad():
        expected = trained_model(run, "last")(x)["logits"]
    out = tmp_path / "out.npz"
    args = ["predict", str(run), str(tmp_path / "in.pt"), "-o", str(out)]
    assert main([*args, "--checkpoint", "last"]) == 0
    with np.load(out) as saved:
        assert list(saved.files) == ["logits"]
        assert torch.allclose(torch.from_numpy(saved["logits"]), expected, atol=1e-6)
    np.savez(tmp_path / "in.npz", x=x.numpy())
    pt = tmp_path / "out.pt"
    assert main(["predict", str(run), str(tmp_path / "in.npz"), "-o", str(pt)]) == 0
    best = trained_model(run, "best")(x)["logits"].detach()
    assert torch.allclose(torch.load(pt, weights_only=True)["logits"], best, atol=1e-6)


def test_predict_never_replaces_a_file_without_overwrite(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"x": torch.randn(3, 6)}, tmp_path / "in.pt")
    mine = tmp_path / "mine.npz"
    mine.write_bytes(b"the user's file")
    args = ["predict", str(run), str(tmp_path / "in.pt"), "-o", str(mine)]
    assert main(args) == 2
    assert (
        capsys.readouterr().err
        == f"error: {mine} exists; give --overwrite to replace it\n"
    )
    assert mine.read_bytes() == b"the user's file"
    assert main([*args, "--overwrite"]) == 0
    with np.load(mine) as saved:
        assert saved["logits"].shape == (3, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pt", "mine.npz"]


def test_predict_checks_the_input_names_and_shapes(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"features": torch.randn(3, 6)}, tmp_path / "named.pt")
    torch.save({"x": torch.randn(3, 5)}, tmp_path / "shaped.pt")
    cases = {
        "named.pt": "has no array 'x' (an input of the model); it has: features",
        "shaped.pt": "array 'x' holds samples of shape [5]; input 'x' is declared [6]",
    }
    for name, message in cases.items():
        capsys.readouterr()
        out = tmp_path / "out.npz"
        assert main(["predict", str(run), str(tmp_path / name), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not out.exists()


def test_evaluate_on_the_test_split_and_a_changed_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnspec.runtime.evaluate import load_run, split_samples

    write_data(tmp_path / "data.pt")
    spec = tmp_path / "tiny.yaml"
    train = TRAIN.replace(
        "val_fraction: 0.15", "val_fraction: 0.15\n    test_fraction: 0.2"
    )
    spec.write_text(TINY_MODEL + textwrap.dedent(train), encoding="utf-8")
    Trainer(spec, tmp_path / "run", progress=False).fit()
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    test_indices = saved["test"]["indices"]
    assert len(test_indices) == 20

    report = evaluate_json(capsys, str(tmp_path / "run"), "--split", "test")
    assert (report["data"], report["samples"]) == ("test", 20)
    # The same samples, read from the data file by the indices split.json records.
    data = torch.load(tmp_path / "data.pt")
    picked = {k: v[torch.tensor(test_indices)] for k, v in data.items()}
    torch.save(picked, tmp_path / "test.pt")
    by_file = evaluate_json(
        capsys, str(tmp_path / "run"), "--data", str(tmp_path / "test.pt")
    )
    assert by_file["metrics"] == pytest.approx(report["metrics"], rel=1e-6)
    run = load_run(tmp_path / "run")
    assert len(split_samples(run, "test")) == 20

    # Data that changed since the run would give other samples: refused, one line.
    write_data(tmp_path / "data.pt", n=120)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "split.json" in err and "the data files changed since the run" in err
    assert err.count("\n") == 1
