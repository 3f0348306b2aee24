"""The fine-tuning recipe end to end: derive a spec, load the base's trained weights,
freeze the backbone and train; only the new head changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

import nnspec
from nnspec.runtime import Trainer
from nnspec.runtime.weights import save_weights


def test_only_the_new_head_changes(
    tiny_spec: Callable[..., Path], tmp_path: Path
) -> None:
    base = tiny_spec()  # tiny.yaml with its train section, data.pt beside it
    pretrained = nnspec.load(base).build()
    save_weights(pretrained, tmp_path / "pretrained.safetensors")
    derived = tmp_path / "fine_tune.yaml"
    derived.write_text(
        "nnspec: 1\n"
        "extends: tiny.yaml\n"
        "name: FineTuned\n"
        "replace: {head: {op: Linear, out_features: 3}}\n"
        "weights: {path: pretrained.safetensors, strict: false}\n"
        "freeze: [hidden]\n"
    )
    trainer = Trainer(derived, tmp_path / "run", progress=False)
    trainer.fit()
    model = trainer.model
    # The backbone is the pretrained one, untouched by training...
    torch.testing.assert_close(
        model.hidden.weight, pretrained.hidden.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(
        model.hidden.bias, pretrained.hidden.bias, rtol=0, atol=0
    )
    # ...and the head, though of the same shape and so loaded too, has trained.
    assert not torch.equal(model.head.weight.detach(), pretrained.head.weight)
