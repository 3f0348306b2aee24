"""The training example runs as written and learns: at least 95% on held-out digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import nnspec
from nnspec.runtime import Trainer, load_checkpoint
from tests.conftest import EXAMPLES


def test_digits_example_reaches_95_percent(tmp_path: Path) -> None:
    spec = EXAMPLES / "digits.yaml"
    result = Trainer(spec, tmp_path / "digits", progress=False).fit()
    assert result.status == "completed"
    assert result.best is not None and result.best["monitor"] == "val_accuracy"
    assert result.best["value"] >= 0.95

    # Score the best checkpoint independently, on all 1,797 digits.
    model = nnspec.load(spec).build()
    model.load_state_dict(
        load_checkpoint(tmp_path / "digits/checkpoints/best.pt")["model"]
    )
    model.eval()
    with np.load(EXAMPLES / "data" / "digits.npz") as data:
        images, labels = (
            torch.from_numpy(data["image"]),
            torch.from_numpy(data["label"]),
        )
    with torch.no_grad():
        predicted = model(images)["logits"].argmax(dim=1)
    assert (predicted == labels).float().mean().item() >= 0.95
