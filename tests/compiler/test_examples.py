"""Each example spec compiles to a model that computes what the hand-written one does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from tests.compiler import handwritten
from tests.compiler.examples import (
    EXAMPLE_NAMES,
    copy_weights,
    load_example,
    num_params,
    parametrised_leaves,
)
from tests.conftest import EXAMPLES

# example -> (hand-written model, spec params, hand-written kwargs, input shapes)
CASES: dict[str, tuple[Callable[..., nn.Module], dict, dict, list[tuple[int, ...]]]] = {
    "lenet": (handwritten.LeNet, {}, {}, [(4, 3, 32, 32)]),
    "digits": (handwritten.DigitsNet, {}, {}, [(4, 1, 8, 8)]),
    "alexnet": (handwritten.AlexNet, {}, {}, [(1, 3, 224, 224)]),
    # Another size than the declared [3, 64, 64]: the generated U-Net is not tied to it.
    "unet": (handwritten.UNet, {}, {}, [(1, 3, 48, 80)]),
    "shared_mlp": (handwritten.SharedMLP, {}, {}, [(5, 32)]),
    "resnet_small": (handwritten.ResNetSmall, {}, {}, [(2, 3, 32, 32)]),
    "extra_input": (handwritten.ImageWithMetadata, {}, {}, [(3, 3, 32, 32), (3, 8)]),
    "wine": (handwritten.WineNet, {}, {}, [(5, 13)]),
    "shapes": (handwritten.ShapesNet, {}, {}, [(2, 1, 32, 32)]),
}


def _pair(
    name: str, params: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[nn.Module, nn.Module]:
    factory = CASES[name][0]
    compiled = load_example(name, **params).build()
    reference = factory(**kwargs)
    copy_weights(reference, compiled)
    return compiled.eval(), reference.eval()


def _inputs(shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in shapes]


def test_every_example_has_a_case() -> None:
    assert set(EXAMPLE_NAMES) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_matches_hand_written(name: str) -> None:
    _, params, kwargs, shapes = CASES[name]
    compiled, reference = _pair(name, params, kwargs)
    assert num_params(compiled) == num_params(reference)
    assert parametrised_leaves(compiled) == parametrised_leaves(reference)
    inputs = _inputs(shapes)
    with torch.no_grad():
        ours = compiled(*inputs)
        theirs = reference(*inputs)
    assert_close(ours, theirs)


def test_examples_point_editors_at_the_schema() -> None:
    for name in EXAMPLE_NAMES:
        spec_file = EXAMPLES / f"{name}.yaml"
        first = spec_file.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), name
        assert (spec_file.parent / first[len(prefix) :]).resolve().is_file()


def test_example_classes_are_named_by_the_spec() -> None:
    for name in CASES:
        spec = load_example(name)
        assert spec.module_class().__name__ == spec.name
        assert spec.name == CASES[name][0].__name__


def test_alexnet_params() -> None:
    params = {"classes": 10, "dropout": 0.25}
    compiled, reference = _pair("alexnet", params, params)
    drops = [m.p for m in compiled.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.25, 0.25]
    assert compiled.classifier.fc3.out_features == 10
    # The adaptive pool lets the model take smaller images than the declared 224x224.
    (x,) = _inputs([(2, 3, 64, 64)])
    with torch.no_grad():
        assert_close(compiled(x), reference(x))


def test_unet_with_smaller_base() -> None:
    compiled, reference = _pair(
        "unet", {"base": 8, "classes": 3}, {"base": 8, "classes": 3}
    )
    (x,) = _inputs([(2, 3, 32, 32)])
    with torch.no_grad():
        out = compiled(x)
        assert_close(out, reference(x))
    assert out.shape == (2, 3, 32, 32)


def test_shared_layer_is_one_module_with_accumulated_gradient() -> None:
    compiled, reference = _pair("shared_mlp", {}, {})
    keys = list(compiled.state_dict())
    assert [k for k in keys if k.startswith("hidden")] == [
        "hidden.weight",
        "hidden.bias",
    ]
    assert not any(k.startswith("hidden_again") for k in keys)
    (x,) = _inputs([(6, 32)])
    for model in (compiled, reference):
        model.train()
        (model(x) ** 2).sum().backward()
    for (name, ours), theirs in zip(
        compiled.named_parameters(), reference.parameters()
    ):
        assert ours.grad is not None, name
        assert_close(ours.grad, theirs.grad)
    # Both calls contribute: the gradient differs from that of a single call.
    single = handwritten.SharedMLP()
    copy_weights(reference, single)
    h = torch.relu(single.hidden(torch.relu(single.fc_in(x))))
    (single.fc_out(h) ** 2).sum().backward()
    assert not torch.allclose(single.hidden.weight.grad, compiled.hidden.weight.grad)


def test_resnet_stages_are_sequentials_of_blocks() -> None:
    model = load_example("resnet_small").build()
    assert isinstance(model.layer1, nn.Sequential)
    assert [name for name, _ in model.layer1.named_children()] == ["0", "1"]
    assert [name for name, _ in model.layer2.named_children()] == ["0"]
    assert type(model.layer1[0]).__name__ == "BasicBlock"
    assert type(model.layer1[0]) is type(model.layer3[0])
    keys = list(model.state_dict())
    assert keys[keys.index("layer1.0.conv1.weight") - 1].startswith("bn1.")
    assert "down2.downsample.conv.weight" in keys
    # The ReLU of a block is one module called twice.
    assert [n for n, _ in model.layer1[0].named_children()].count("relu") == 1


def test_resnet_depth_param() -> None:
    params = {"depth": 3, "width": 8, "classes": 4}
    compiled, reference = _pair("resnet_small", params, params)
    assert len(compiled.layer1) == 3 and len(compiled.layer3) == 2
    (x,) = _inputs([(2, 3, 24, 24)])
    with torch.no_grad():
        assert_close(compiled(x), reference(x))


def test_resnet_trains_like_hand_written() -> None:
    compiled, reference = _pair("resnet_small", {}, {})
    (x,) = _inputs([(4, 3, 16, 16)])
    for model in (compiled, reference):
        model.train()
        torch.manual_seed(3)  # same dropout masks
        model(x).logsumexp(dim=1).sum().backward()
    for ours, theirs in zip(compiled.parameters(), reference.parameters()):
        assert_close(ours.grad, theirs.grad)
    for ours, theirs in zip(compiled.buffers(), reference.buffers()):
        assert_close(ours, theirs)  # batch-norm running statistics


def test_extra_input_returns_dict_with_intermediate_output() -> None:
    compiled, reference = _pair("extra_input", {}, {})
    image, extra = _inputs([(2, 3, 32, 32), (2, 8)])
    with torch.no_grad():
        out = compiled(image, extra)
        expected = reference(image, extra)
    assert list(out) == ["logits", "features"]
    assert out["logits"].shape == (2, 5)
    assert out["features"].shape == (2, 32)
    assert_close(out, expected)
    # The extra input changes the logits, not the image features.
    with torch.no_grad():
        moved = compiled(image, extra + 1.0)
    assert_close(moved["features"], out["features"])
    assert not torch.allclose(moved["logits"], out["logits"])


def test_extra_input_init_rules_match_hand_written_init() -> None:
    spec = load_example("extra_input")
    torch.manual_seed(7)
    compiled = spec.build()
    torch.manual_seed(7)
    reference = handwritten.ImageWithMetadata()
    for (key, ours), theirs in zip(
        compiled.state_dict().items(), reference.state_dict().values()
    ):
        assert_close(ours, theirs, msg=key)


def test_extra_input_init_rules_applied() -> None:
    torch.manual_seed(11)
    model = load_example("extra_input").build()
    for block in (model.stem, model.stage1):
        assert torch.equal(block.bn.weight, torch.ones_like(block.bn.weight))
        assert torch.equal(block.bn.bias, torch.zeros_like(block.bn.bias))
        assert torch.equal(block.conv.bias, torch.full_like(block.conv.bias, 0.1))
        weight = block.conv.weight
        fan_in = weight[0].numel()
        fan_out = weight.shape[0] * weight[0, 0].numel()
        xavier_std = (2.0 / (fan_in + fan_out)) ** 0.5
        assert 0.8 * xavier_std < weight.std().item() < 1.2 * xavier_std
    for linear in (model.fc1, model.head):
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    # fc1 holds 40 x 64 weights drawn with std 0.01; PyTorch's default would be ~0.09.
    assert 0.008 < model.fc1.weight.std().item() < 0.012
    assert abs(model.fc1.weight.mean().item()) < 0.002


def test_extra_input_freezes_the_stem() -> None:
    compiled, reference = _pair("extra_input", {}, {})
    flags = [(n, p.requires_grad) for n, p in compiled.named_parameters()]
    assert [n for n, trains in flags if not trains] == [
        "stem.conv.weight",
        "stem.conv.bias",
        "stem.bn.weight",
        "stem.bn.bias",
    ]
    assert [t for _, t in flags] == [p.requires_grad for p in reference.parameters()]
    image, extra = _inputs([(2, 3, 16, 16), (2, 8)])
    compiled.train()
    compiled(image, extra)["logits"].sum().backward()
    assert compiled.stem.conv.weight.grad is None
    assert compiled.stage1.conv.weight.grad is not None
