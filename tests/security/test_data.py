"""Bad data and bad training settings: each is caught before the work it would
spoil, with one line that names what is wrong, and an earlier checkpoint is kept."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nnspec.cli import main
from nnspec.runtime.checkpoint import load_checkpoint
from tests.runtime.conftest import TINY_MODEL, write_data

# The train section starts at line 13, after the 12 lines of the tiny model.
TRAIN = """\
train:
  data:
    source: {pt: data.pt}
    batch_size: 8
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  steps: 4
"""


def train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *args: str
) -> tuple[int, str]:
    """(exit status, standard error) of `nnspec train` on the tiny model."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_MODEL + textwrap.dedent(text), encoding="utf-8")
    capsys.readouterr()
    status = main(["train", str(spec), "--out", str(tmp_path / "run"), *args])
    return status, capsys.readouterr().err


def first_error(err: str, tmp_path: Path) -> str:
    """The error line, without the spec's (temporary) path."""
    line = err.splitlines()[0]
    return line.replace(str(tmp_path / "tiny.yaml"), "tiny.yaml")


# -- train settings out of range ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("steps: 4", "seed: 100000000000000000000000"),
            "tiny.yaml:18:9: error: train.seed: expected at most 4294967295, "
            "received 100000000000000000000000",
        ),
        (
            ("target: label}", "target: label, weight: -1}"),
            "tiny.yaml:17:64: error: train.loss.logits.weight: expected at least 0, "
            "received -1",
        ),
        (
            ("steps: 4", "scheduler: {op: OneCycleLR, max_lr: -1}"),
            "tiny.yaml:18:39: error: scheduler OneCycleLR: max_lr must be a finite "
            "number more than 0, received -1",
        ),
        (
            (
                "steps: 4",
                "steps: 12\n  scheduler: {op: OneCycleLR, max_lr: 0.1, "
                "total_steps: 10, interval: step}",
            ),
            "tiny.yaml:19:57: error: OneCycleLR lasts 10 steps, but this run takes 12 "
            "steps; leave total_steps out to fit the schedule to the run, or make it "
            "at least 12",
        ),
        (
            ("steps: 4", "scheduler: {op: StepLR, step_size: 0}"),
            "tiny.yaml:18:14: error: scheduler StepLR: its arguments divide by zero "
            "as it steps (integer modulo by zero)",
        ),
        (
            ("steps: 4", "scheduler: {op: ExponentialLR, gamma: -0.5}"),
            "tiny.yaml:18:14: error: scheduler ExponentialLR: its arguments make the "
            "learning rate -0.05 at step 1; a learning rate must be a finite number, "
            "at least 0",
        ),
        (
            ("steps: 4", "optimizer: {op: SGD, lr: .inf}"),
            "tiny.yaml:18:28: error: optimizer SGD: lr must be a finite number, "
            "received inf",
        ),
        (
            ("batch_size: 8", "batch_size: 8\n    workers: 100000"),
            "tiny.yaml:17:14: error: train.data.workers: expected at most 256, "
            "received 100000",
        ),
        (
            ("steps: 4", "grad_clip: .nan"),
            "tiny.yaml:18:14: error: train.grad_clip: Input should be a finite number",
        ),
        (
            ("{pt: data.pt}", "{synthetic: 3000000000}"),
            "tiny.yaml:15:25: error: train.data.source.synthetic: expected at most "
            "2147483647, received 3000000000",
        ),
        (
            ("{pt: data.pt}", "{synthetic: 2000000000}"),
            "tiny.yaml:15:25: error: 2000000000 synthetic samples take 59.6 GiB, over "
            "the limit of 2.0 GiB for synthetic data: ask for at most 67108864 "
            "samples",
        ),
    ],
)
def test_a_setting_out_of_range_is_an_error_at_its_value(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    expected: str,
) -> None:
    write_data(tmp_path / "data.pt", 40)
    status, err = train(tmp_path, capsys, TRAIN.replace(*change))
    assert (status, first_error(err, tmp_path)) == (2, expected)
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


# -- labels ---------------------------------------------------------------------


def test_labels_out_of_range_are_found_before_the_first_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_data(tmp_path / "data.pt", 40)
    data = torch.load(tmp_path / "data.pt")
    data["label"][29] = 3  # the model has 3 classes: 0, 1, 2
    torch.save(data, tmp_path / "data.pt")
    status, err = train(tmp_path, capsys, TRAIN)
    assert (status, first_error(err, tmp_path)) == (
        2,
        "tiny.yaml:15:13: error: the data's array 'label' holds class 3 at sample "
        "29, but output 'logits' (CrossEntropyLoss) has 3 classes: 0 to 2, or -100 "
        "to ignore",
    )
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_ignored_labels_are_in_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_data(tmp_path / "data.pt", 40)
    data = torch.load(tmp_path / "data.pt")
    data["label"][5] = -100  # CrossEntropyLoss's ignore_index
    torch.save(data, tmp_path / "data.pt")
    assert train(tmp_path, capsys, TRAIN)[0] == 0


LABELS_OF_A_DATASET = """\
train:
  data:
    source: tests.security.bad_datasets:late_bad_label
    batch_size: 8
    shuffle: false
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  steps: 4
  checkpoint_every: 1
"""


def test_a_dataset_label_out_of_range_stops_the_run_at_its_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Sample 20 is in the third batch: steps 1 and 2 run and are saved.
    status, err = train(
        tmp_path, capsys, LABELS_OF_A_DATASET, "--allow-import", "tests"
    )
    assert (status, err.splitlines()[-1]) == (
        1,
        "error: the training dataset of tests.security.bad_datasets:late_bad_label: "
        "array 'label' holds class 7 at sample 20, but output 'logits' "
        "(CrossEntropyLoss) has 3 classes: 0 to 2, or -100 to ignore; training "
        "stopped before the step that would use it",
    )
    assert "Traceback" not in err
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


# -- validation values ------------------------------------------------------------


def test_a_nan_in_validation_data_stops_the_run_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_data(tmp_path / "data.pt", 40)
    write_data(tmp_path / "val.pt", 12, seed=1)
    val = torch.load(tmp_path / "val.pt")
    val["x"][10, 2] = float("nan")
    torch.save(val, tmp_path / "val.pt")
    text = TRAIN.replace(
        "batch_size: 8", "batch_size: 8\n    val: {pt: val.pt}"
    ).replace("steps: 4", "steps: 4\n  val_every: 2\n  checkpoint_every: 1")
    status, err = train(tmp_path, capsys, text)
    run = tmp_path / "run"
    assert (status, err.splitlines()[-1]) == (
        1,
        "error: validation at step 2 (epoch 1) gives val_loss nan: first in "
        "validation batch 2, whose array 'x' holds nan at sample 10 of "
        "train.data.val; training stopped and the last checkpoint is "
        f"{run / 'checkpoints' / 'last.pt'} (step 1). Check the validation data",
    )
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1
    assert not (run / "checkpoints" / "best.pt").exists()


# -- data files -------------------------------------------------------------------

NPZ = TRAIN.replace("{pt: data.pt}", "{npz: data.npz}")


def good_arrays() -> dict[str, np.ndarray]:
    return {"x": np.zeros((16, 6), np.float32), "label": np.zeros(16, np.int64)}


def _object_array(marker: Path) -> np.ndarray:
    """An object array whose unpickling would create ``marker``."""

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    array = np.empty(16, dtype=object)
    array[:] = [Payload() for _ in range(16)]
    return array


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            "strings",
            "array 'label' of {file} holds strings (dtype <U1); data arrays hold "
            "numbers or booleans",
        ),
        (
            "objects",
            "cannot read array 'label' of {file}: it holds Python objects, which are "
            "read only with pickle, and nnspec never unpickles data",
        ),
        (
            "sparse",
            "the data has no array 'x' (the input); it has: data, indices, indptr, "
            "format, shape; {file} looks like a scipy sparse matrix (save_npz): "
            "store dense arrays with numpy.savez",
        ),
        (
            "scalar",
            "array 'x' of {file} is a single value; samples go along its first axis",
        ),
        ("npy", "{file} is not an .npz archive (a zip of named .npy arrays)"),
        ("truncated", "cannot read {file} as .npz: File is not a zip file"),
        ("fifo", "{file} is not a regular file"),
    ],
)
def test_a_bad_npz_file_is_one_line_naming_the_file_and_array(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str, expected: str
) -> None:
    file = tmp_path / "data.npz"
    arrays = good_arrays()
    marker = tmp_path / "unpickled"
    if make == "strings":
        np.savez(file, x=arrays["x"], label=np.array(["a"] * 16))
    elif make == "objects":
        np.savez(file, x=arrays["x"], label=_object_array(marker))
    elif make == "sparse":
        np.savez(
            file,
            data=np.ones(3),
            indices=np.arange(3),
            indptr=np.array([0, 1, 2, 3]),
            format=np.array(b"csr"),
            shape=np.array([3, 3]),
        )
    elif make == "scalar":
        np.savez(file, x=np.float32(1), label=arrays["label"])
    elif make == "npy":
        np.save(tmp_path / "data.npy", arrays["x"])
        (tmp_path / "data.npy").rename(file)
    elif make == "truncated":
        np.savez(file, **arrays)
        file.write_bytes(file.read_bytes()[:200])
    else:
        os.mkfifo(file)
    status, err = train(tmp_path, capsys, NPZ)
    assert (status, first_error(err, tmp_path)) == (
        2,
        "tiny.yaml:15:19: error: " + expected.format(file=file),
    )
    assert "Traceback" not in err
    assert not marker.exists()


def test_a_sparse_tensor_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(
        {"x": torch.zeros(16, 6).to_sparse(), "label": torch.zeros(16).long()},
        tmp_path / "data.pt",
    )
    status, err = train(tmp_path, capsys, TRAIN)
    assert (status, first_error(err, tmp_path)) == (
        2,
        "tiny.yaml:15:13: error: array 'x' is a sparse_coo tensor; store a dense "
        "one (tensor.to_dense())",
    )


def test_a_resume_longer_than_an_explicit_one_cycle_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_data(tmp_path / "data.pt", 40)
    text = TRAIN.replace(
        "steps: 4",
        "steps: 4\n  scheduler: {op: OneCycleLR, max_lr: 0.1, total_steps: 4, "
        "interval: step}",
    )
    assert train(tmp_path, capsys, text)[0] == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    status, err = train(tmp_path, capsys, text, "--resume", "--set", "steps=6")
    assert (status, first_error(err, tmp_path)) == (
        2,
        "tiny.yaml:19:57: error: OneCycleLR lasts 4 steps, but this run takes 6 "
        "steps; leave total_steps out to fit the schedule to the run, or make it "
        "at least 6",
    )
    assert last.read_bytes() == before
