"""The data examples run as written: the wine table learns, and the shapes folder
written by examples/data/make_shapes.py trains with the segmentation spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.runtime import Trainer
from tests.conftest import EXAMPLES


def test_wine_example_reaches_90_percent_and_records_its_test_rows(
    tmp_path: Path,
) -> None:
    result = Trainer(EXAMPLES / "wine.yaml", tmp_path / "wine", progress=False).fit()
    assert result.status == "completed"
    assert result.best is not None and result.best["value"] >= 0.9
    record = json.loads((tmp_path / "wine" / "split.json").read_text())
    assert record["source_samples"] == 178
    assert len(record["val"]["indices"]) == 36 and len(record["test"]["indices"]) == 18
    assert not set(record["val"]["indices"]) & set(record["test"]["indices"])


def test_shapes_example_trains_on_the_images_its_script_writes(
    tmp_path: Path,
) -> None:
    pytest.importorskip("PIL")
    shutil.copy(EXAMPLES / "shapes.yaml", tmp_path / "shapes.yaml")
    out = tmp_path / "data" / "shapes"
    script = EXAMPLES / "data" / "make_shapes.py"
    subprocess.run([sys.executable, script, out, "-n", "40"], check=True)
    assert len(list((out / "images").glob("*.png"))) == 40
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(
        p.name for p in (out / "images").iterdir()
    )
    result = Trainer(
        tmp_path / "shapes.yaml",
        tmp_path / "run",
        overrides={"steps": 3, "epochs": 1},
        progress=False,
    ).fit()
    assert result.step == 2  # 32 training images in batches of 16: one epoch
