"""The references themselves: they build, count what they are published to count, and run."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.library

from tests.zoo import torchvision_models as tvm
from tests.zoo.harness import assert_drop_in, assert_same_keys
from tests.zoo.references import HAND_WRITTEN, REFERENCES, VIT_B_16

NAMES = sorted(REFERENCES)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Small forwards: one thread is faster than several on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_full_size_reference_counts_its_published_parameters(name: str) -> None:
    ref = REFERENCES[name]
    module = ref.full()
    state = module.state_dict()
    assert all(tensor.is_meta for tensor in state.values())
    assert _count(module) == ref.parameters
    assert len(state) == ref.keys


@pytest.mark.parametrize("name", NAMES)
def test_small_reference_runs_on_its_inputs(name: str) -> None:
    ref = REFERENCES[name]
    module = ref.small().eval()
    inputs = ref.small_inputs(seed=0)
    assert len(inputs) == len(ref.input_names)
    assert all(torch.equal(a, b) for a, b in zip(inputs, ref.small_inputs(seed=0)))
    assert not all(torch.equal(a, b) for a, b in zip(inputs, ref.small_inputs(seed=1)))
    with torch.no_grad():
        output = module(*inputs)
    assert ref.small_outputs
    for key, shape in ref.small_outputs.items():
        tensor = output if key == "" else output[key]
        assert tuple(tensor.shape) == shape
        assert torch.isfinite(tensor).all()


def test_small_overrides_change_the_build() -> None:
    module = REFERENCES["resnet50"].small(num_classes=7)
    assert tuple(module.state_dict()["fc.weight"].shape) == (7, 2048)


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_resnet_is_torchvisions(name: str) -> None:
    models = tvm.require_torchvision()
    ours = HAND_WRITTEN[name](num_classes=10)
    theirs = getattr(models, name)(weights=None, num_classes=10)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert_drop_in(ours, theirs, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_resnet_counts(name: str) -> None:
    with torch.device("meta"):
        module = HAND_WRITTEN[name]()
    assert _count(module) == REFERENCES[name].parameters
    assert len(module.state_dict()) == REFERENCES[name].keys


def test_without_torchvision_resnets_are_hand_written_and_the_rest_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tests.zoo.references as references

    monkeypatch.setattr(references, "torchvision_models", lambda: None)
    monkeypatch.setattr(tvm, "torchvision_models", lambda: None)
    module = REFERENCES["resnet50"].full()
    assert isinstance(module, references.ResNet)
    assert _count(module) == REFERENCES["resnet50"].parameters
    with pytest.raises(pytest.skip.Exception, match="torchvision is not installed"):
        REFERENCES["densenet121"].full()


def test_vit_is_torchvisions_vit_b_16() -> None:
    models = tvm.require_torchvision()
    with torch.device("meta"):
        theirs = models.vit_b_16(weights=None)
    ours = REFERENCES["vit_b_16"].full()
    assert_same_keys(ours, theirs)
    state = ours.state_dict()
    assert tuple(state["class_token"].shape) == (1, 1, VIT_B_16["hidden_dim"])
    assert tuple(state["encoder.pos_embedding"].shape) == (1, 197, 768)
    layers = [key for key in state if key.endswith(".ln_1.weight")]
    assert layers[0] == "encoder.layers.encoder_layer_0.ln_1.weight"
    assert len(layers) == 12


def test_vision_reference_facts() -> None:
    convnext = REFERENCES["convnext_tiny"].full().state_dict()
    assert tuple(convnext["features.1.0.layer_scale"].shape) == (96, 1, 1)
    densenet = REFERENCES["densenet121"].full().state_dict()
    assert "features.denseblock1.denselayer1.conv1.weight" in densenet
    assert "features.denseblock4.denselayer16.conv2.weight" in densenet
    resnet = REFERENCES["resnet50"].full().state_dict()
    assert "layer1.0.downsample.1.num_batches_tracked" in resnet
    head = REFERENCES["resnet50"].full(num_classes=10).fc
    assert tuple(head.weight.shape) == (10, 2048)


def test_gpt2_ties_its_head_and_has_no_buffers() -> None:
    module = REFERENCES["gpt2"].full()
    assert module.lm_head.weight is module.transformer.wte.weight
    state = module.state_dict()
    assert "lm_head.weight" in state
    assert tuple(state["transformer.h.0.attn.c_attn.weight"].shape) == (768, 2304)
    assert list(module.named_buffers()) == []
    # Counted once: the head adds no parameters of its own.
    untied = sum(t.numel() for t in state.values())
    assert untied - _count(module) == 50257 * 768


def test_bert_buffers_are_not_in_its_state_dict() -> None:
    module = REFERENCES["bert_base"].full()
    buffers = {name for name, _ in module.named_buffers()}
    assert {"embeddings.position_ids", "embeddings.token_type_ids"} <= buffers
    assert not buffers & set(module.state_dict())
    assert module.config.layer_norm_eps == 1e-12


def test_unet_pads_upsampled_maps_to_the_skip() -> None:
    ref = REFERENCES["unet"]
    module = ref.small().eval()
    assert "outc.conv.weight" in module.state_dict()
    assert "up1.conv.double_conv.0.weight" in module.state_dict()
    with torch.no_grad():
        # 36 pools to 9, then 4: upsampled back to 8, padded to the skip's 9.
        assert module(torch.randn(1, 3, 36, 36)).shape == (1, 2, 36, 36)
        assert module(torch.randn(1, 3, 37, 35)).shape == (1, 2, 37, 35)
    transposed = ref.full(bilinear=False)
    assert tuple(transposed.up1.up.weight.shape) == (1024, 512, 2, 2)


# torchvision's tolerant import -------------------------------------------------------------


def _package(
    tmp_path: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))


ABSENT_OP = """
    import torch.library

    @torch.library.register_fake("nnspec_zoo_test::absent")
    def absent(x):
        return x

    KEPT = absent
"""


def test_missing_operators_are_tolerated_during_the_import_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = torch.library.register_fake
    _package(tmp_path, "nnspec_zoo_absent_op", ABSENT_OP, monkeypatch)
    monkeypatch.delitem(sys.modules, "nnspec_zoo_absent_op", raising=False)
    module = tvm.tolerant_import("nnspec_zoo_absent_op")
    assert module is not None
    assert module.KEPT.__name__ == "absent"  # the decorator gave the function back
    assert torch.library.register_fake is original
    with pytest.raises(RuntimeError, match="does not exist"):
        torch.library.register_fake("nnspec_zoo_test::absent")(lambda x: x)
    monkeypatch.delitem(sys.modules, "nnspec_zoo_absent_op")


def test_other_import_errors_propagate_and_leave_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = torch.library.register_fake
    body = "from . import part\n"
    _package(tmp_path, "nnspec_zoo_broken", body, monkeypatch)
    (tmp_path / "nnspec_zoo_broken" / "part.py").write_text(
        "raise RuntimeError('boom')\n"
    )
    with pytest.raises(RuntimeError, match="boom"):
        tvm.tolerant_import("nnspec_zoo_broken")
    assert torch.library.register_fake is original
    assert not [name for name in sys.modules if name.startswith("nnspec_zoo_broken")]


def test_an_absent_package_is_none() -> None:
    assert tvm.tolerant_import("nnspec_zoo_not_installed.models") is None


def test_require_torchvision_skips_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tvm, "torchvision_models", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="torchvision is not installed"):
        tvm.require_torchvision()


def test_torchvision_models_import() -> None:
    original = torch.library.register_fake
    models = tvm.require_torchvision()
    assert callable(models.resnet18)
    assert torch.library.register_fake is original
