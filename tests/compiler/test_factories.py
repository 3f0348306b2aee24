"""Modules from allowed factories, with submodules replaced (the fine-tuning recipe)."""

from __future__ import annotations

import torch

from tests.compiler.fixtures.custom_layers import TinyNet
from tests.helpers import compile_text, expect_error

FACTORY = "tests.compiler.fixtures.custom_layers:tiny_net"


def test_factory_with_a_patched_head() -> None:
    spec = compile_text(
        f"""
        inputs: {{x: [3, 16, 16]}}
        layers:
          - op: "{FACTORY}"
            name: backbone
            width: 12
            patch:
              fc: {{op: Linear, out_features: 3}}
        freeze: ["backbone.body*"]
        """,
        allow_imports=["tests"],
    )
    source = spec.source()
    assert (
        "self.backbone = tests.compiler.fixtures.custom_layers.tiny_net(width=12)"
        in source
    )
    assert "self.backbone.fc = nn.Linear(12, 3)" in source
    model = spec.build()
    assert isinstance(model.backbone, TinyNet)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trains == {"backbone.fc.weight", "backbone.fc.bias"}


def test_fine_tune_changes_only_the_new_head() -> None:
    spec = compile_text(
        f"""
        inputs: {{x: [3, 8, 8]}}
        layers:
          - {{op: "{FACTORY}", name: backbone, patch: {{fc: {{op: Linear, out_features: 2}}}}}}
        freeze: ["backbone.body"]
        """,
        allow_imports=["tests"],
    )
    model = spec.build()
    pretrained = TinyNet()
    state = {
        k: v for k, v in pretrained.state_dict().items() if not k.startswith("fc.")
    }
    model.backbone.load_state_dict(state, strict=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1
    )
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 2, (8,))
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    changed = {
        k for k, v in model.state_dict().items() if not torch.equal(v, before[k])
    }
    assert changed == {"backbone.fc.weight", "backbone.fc.bias"}
    torch.testing.assert_close(model.backbone.body[0].weight, pretrained.body[0].weight)


def test_patch_of_a_missing_submodule() -> None:
    expect_error(
        f"""
        inputs: {{x: [3, 8, 8]}}
        layers:
          - op: "{FACTORY}"
            patch:
              head: {{op: Linear, out_features: 2}}
        """,
        7, 7, "has no submodule 'head'", "its submodules: body, body.0, body.1, pool, fc",
        allow_imports=["tests"],
    )  # fmt: skip


def test_patch_needs_a_module() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: relu, patch: {fc: Identity}}
        """,
        5, 16, "patch replaces submodules of a module",
    )  # fmt: skip
