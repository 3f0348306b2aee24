"""The zoo's checks must fail on a mismatch: each is tried here on modules that differ."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.zoo.harness import (
    assert_drop_in,
    assert_same_keys,
    assert_same_outputs,
    assert_same_train_step,
    primary,
    randomise,
)
from tests.zoo.references import REFERENCES


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Small forwards: one thread is faster than several on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Net(nn.Module):
    """Conv, BatchNorm, LayerNorm, dropout, a bare parameter: what the zoo's models hold."""

    def __init__(
        self, p: float = 0.5, momentum: float = 0.1, act: str = "relu"
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8, momentum=momentum)
        self.scale = nn.Parameter(torch.full((8, 1, 1), 1e-6))
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(8, 4)
        self.act = act

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x)) * self.scale
        x = F.relu(x) if self.act == "relu" else F.gelu(x)
        return self.norm(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x)))


def _images() -> torch.Tensor:
    return torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def _loss(output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return primary(output).square().mean()


def _pair(**ours: object) -> tuple[Net, Net]:
    torch.manual_seed(0)
    ref = randomise(Net(), seed=3)
    return Net(**ours), ref  # type: ignore[arg-type]


# assert_same_keys ----------------------------------------------------------------------------


def test_same_keys_in_any_order() -> None:
    class Reordered(Net):
        def __init__(self) -> None:
            super().__init__()
            conv = self.conv
            del self.conv
            self.conv = conv  # registered last: a different order, the same keys

    assert list(Reordered().state_dict()) != list(Net().state_dict())
    assert_same_keys(Reordered(), Net())


def test_a_missing_key_is_listed() -> None:
    ours = Net()
    ours.fc = nn.Linear(8, 4, bias=False)
    with pytest.raises(AssertionError) as error:
        assert_same_keys(ours, Net())
    assert "missing (in the reference, not ours): fc.bias" in str(error.value)
    assert "1 entries" in str(error.value)


def test_an_unexpected_and_a_mis_shaped_key_are_listed() -> None:
    ours = Net()
    ours.extra = nn.Linear(2, 2, bias=False)
    ours.fc = nn.Linear(8, 5)
    with pytest.raises(AssertionError) as error:
        assert_same_keys(ours, Net())
    message = str(error.value)
    assert "unexpected (ours, not in the reference): extra.weight" in message
    assert "mis-shaped: fc.weight: ours (5, 8), reference (4, 8)" in message
    assert "mis-shaped: fc.bias: ours (5,), reference (4,)" in message


def test_keys_compare_on_the_meta_device() -> None:
    with torch.device("meta"):
        ours, ref = Net(), Net()
        ours.norm = nn.LayerNorm(9)
    with pytest.raises(
        AssertionError, match=r"norm.weight: ours \(9,\), reference \(8,\)"
    ):
        assert_same_keys(ours, ref)


# randomise ---------------------------------------------------------------------------------


def test_randomise_changes_every_parameter_and_statistic() -> None:
    fresh = Net()
    module = randomise(copy.deepcopy(fresh), seed=0)
    before, after = fresh.state_dict(), module.state_dict()
    for key in before:
        assert not torch.equal(before[key], after[key]), key
    assert (after["bn.running_var"] > 0).all()
    assert 1 <= after["bn.num_batches_tracked"].item() <= 1000
    assert after["bn.num_batches_tracked"].dtype == torch.int64
    # Constant-initialised parameters are no longer constant.
    for key in ("scale", "norm.weight", "norm.bias", "bn.weight", "bn.bias"):
        assert after[key].unique().numel() == after[key].numel(), key


def test_randomise_scales_weights_by_their_fan_in() -> None:
    module = nn.Module()
    module.pos_embedding = nn.Parameter(torch.zeros(1, 50, 64))
    module.conv = nn.Conv2d(16, 32, 3)
    randomise(module, seed=0)
    assert 0.8 / 8 < module.pos_embedding.std().item() < 1.2 / 8
    assert 0.8 / 12 < module.conv.weight.std().item() < 1.2 / 12


def test_randomise_is_seeded() -> None:
    a, b, c = (randomise(Net(), seed) for seed in (5, 5, 6))
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key
    assert not torch.equal(a.conv.weight, c.conv.weight)


def test_randomise_keeps_the_scale_of_activations() -> None:
    ref = REFERENCES["resnet18"].small().eval()
    randomise(ref, seed=0)
    with torch.no_grad():
        logits = ref(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(logits).all()
    assert 1e-3 < logits.abs().max().item() < 1e3


def test_randomise_keeps_ties_and_leaves_other_buffers() -> None:
    module = randomise(REFERENCES["gpt2"].small(), seed=0)
    assert module.lm_head.weight is module.transformer.wte.weight
    bert = REFERENCES["bert_base"].small()
    position_ids = bert.embeddings.position_ids.clone()
    randomise(bert, seed=0)
    assert torch.equal(bert.embeddings.position_ids, position_ids)


def test_randomise_refuses_the_meta_device() -> None:
    with torch.device("meta"):
        module = Net()
    with pytest.raises(ValueError, match="meta device"):
        randomise(module, seed=0)


# assert_same_outputs -------------------------------------------------------------------------


def test_same_architecture_has_same_outputs_once_loaded() -> None:
    ours, ref = _pair()
    assert not torch.equal(ours.conv.weight, ref.conv.weight)
    output = assert_same_outputs(ours, ref, _images())
    assert output.shape == (4, 4)
    assert torch.equal(ours.bn.running_mean, ref.bn.running_mean)


def test_a_different_computation_fails() -> None:
    ours, ref = _pair(act="gelu")
    with pytest.raises(AssertionError, match="output"):
        assert_same_outputs(ours, ref, _images())


def test_a_changed_weight_fails_without_loading() -> None:
    ref = randomise(Net(), seed=3)
    ours = copy.deepcopy(ref)
    with torch.no_grad():
        ours.fc.weight[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="output"):
        assert_same_outputs(ours, ref, _images(), load=False)
    # Loading the reference's weights mends it.
    assert_same_outputs(ours, ref, _images())


def test_a_missing_key_fails_before_the_forward() -> None:
    ours, ref = _pair()
    ours.fc = nn.Linear(8, 4, bias=False)
    with pytest.raises(AssertionError, match=r"missing .*: fc\.bias"):
        assert_same_outputs(ours, ref, _images())


class Pair(nn.Module):
    """A dict of two outputs, the second optionally wrong."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.net = Net()
        self.wrong = wrong

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.net.features(x)
        return {"logits": self.net.fc(h), "features": h + (1e-4 if self.wrong else 0)}


def test_dict_outputs_are_compared_by_key() -> None:
    ref = randomise(Pair(), seed=0)
    assert_same_outputs(Pair(), ref, _images())
    with pytest.raises(AssertionError, match="output features"):
        assert_same_outputs(Pair(wrong=True), ref, _images())

    class Renamed(Pair):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"hidden": super().forward(x)["features"]}

    with pytest.raises(AssertionError, match="hidden: ours has this output"):
        assert_same_outputs(Renamed(), ref, _images())


def test_model_outputs_of_transformers_compare_with_dicts() -> None:
    bert = REFERENCES["bert_base"]
    ref = randomise(bert.small(), seed=0)
    inputs = bert.small_inputs()

    class DictBert(type(ref)):  # type: ignore[misc]
        """BertModel's keys, a plain dict out (the pooler scaled by ``wrong``)."""

        wrong = 1.0

        def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
            out = super().forward(*inputs)
            pooled = out.pooler_output * self.wrong
            return {"last_hidden_state": out.last_hidden_state, "pooler_output": pooled}

    assert_same_outputs(DictBert(ref.config), ref, *inputs)
    wrong = DictBert(ref.config)
    wrong.wrong = 1.01
    with pytest.raises(AssertionError, match="output pooler_output"):
        assert_same_outputs(wrong, ref, *inputs)


def test_a_tensor_compares_with_a_model_outputs_first_entry() -> None:
    gpt2 = REFERENCES["gpt2"]
    ref = randomise(gpt2.small(), seed=0)
    (input_ids,) = gpt2.small_inputs()

    class Logits(type(ref)):  # type: ignore[misc]
        """GPT2LMHeadModel's keys, the logits tensor out (moved by ``shift``)."""

        shift = 0.0

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return super().forward(ids).logits + self.shift

    logits = assert_same_outputs(Logits(ref.config), ref, input_ids)
    assert logits.shape == gpt2.small_outputs["logits"]
    moved = Logits(ref.config)
    moved.shift = 1e-3
    with pytest.raises(AssertionError, match="output"):
        assert_same_outputs(moved, ref, input_ids)


def test_a_tuple_compares_with_a_model_outputs_entries() -> None:
    bert = REFERENCES["bert_base"]
    ref = randomise(bert.small(), seed=0)
    inputs = bert.small_inputs()

    class TupleBert(type(ref)):  # type: ignore[misc]
        swap = False

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = super().forward(*inputs)
            pair = (out.last_hidden_state, out.pooler_output)
            return pair[::-1] if self.swap else pair

    assert_same_outputs(TupleBert(ref.config), ref, *inputs)
    swapped = TupleBert(ref.config)
    swapped.swap = True
    with pytest.raises(AssertionError, match="output 0: ours has shape"):
        assert_same_outputs(swapped, ref, *inputs)


# assert_same_train_step ------------------------------------------------------------------------


def test_same_train_step_passes_with_dropout_drawing_alike() -> None:
    ours, ref = _pair()
    our_loss, ref_loss = assert_same_train_step(ours, ref, _images, _loss, seed=0)
    assert torch.equal(our_loss, ref_loss)
    assert ours.conv.weight.grad is not None


def test_a_different_dropout_rate_fails_in_train_mode_only() -> None:
    ours, ref = _pair(p=0.3)
    assert_same_outputs(ours, ref, _images())  # eval: dropout is off, the two agree
    with pytest.raises(AssertionError, match="train-step loss"):
        assert_same_train_step(ours, ref, _images, _loss, seed=0)


def test_dropout_drawing_in_another_order_fails() -> None:
    class Early(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.rand(1)  # draws before the dropout does
            return super().forward(x)

    ours, ref = Early(), randomise(Net(), seed=3)
    with pytest.raises(AssertionError, match="train-step loss"):
        assert_same_train_step(ours, ref, _images, _loss, seed=0)


def test_a_different_gradient_fails_by_name() -> None:
    class Detached(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.drop(self.features(x))
            return F.linear(h, self.fc.weight, self.fc.bias.detach())

    ours, ref = Detached(), randomise(Net(), seed=3)
    with pytest.raises(AssertionError, match=r"gradient of fc.bias: none in ours"):
        assert_same_train_step(ours, ref, _images, _loss, seed=0)

    class Doubled(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            # The same value, twice the gradient for the scale.
            return out + self.scale.sum() - self.scale.sum().detach()

    with pytest.raises(AssertionError, match="gradient of scale"):
        assert_same_train_step(Doubled(), ref, _images, _loss, seed=0)


def test_a_different_batchnorm_momentum_fails_on_the_statistics() -> None:
    ours, ref = _pair(momentum=0.2)
    with pytest.raises(
        AssertionError, match=r"buffer bn\.running_mean after the train step"
    ):
        assert_same_train_step(ours, ref, _images, _loss, seed=0)


def test_train_step_compares_tied_parameters_under_both_names() -> None:
    gpt2 = REFERENCES["gpt2"]
    ref = randomise(gpt2.small(), seed=0)
    ours = gpt2.small()

    def loss(output: object, ids: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            primary(output)[:, :-1].flatten(0, 1), ids[:, 1:].flatten()
        )

    def ids() -> tuple[torch.Tensor, ...]:
        return gpt2.small_inputs()

    our_loss, ref_loss = assert_same_train_step(ours, ref, ids, loss, seed=0)
    assert torch.isfinite(our_loss)
    assert torch.equal(our_loss, ref_loss)
    assert ours.lm_head.weight.grad is ours.transformer.wte.weight.grad


# assert_drop_in ----------------------------------------------------------------------------


def test_drop_in_runs_every_check() -> None:
    ref = Net()
    assert_drop_in(Net(), ref, _images(), seed=4)
    assert torch.equal(ref.conv.weight, randomise(Net(), seed=4).conv.weight)
    with pytest.raises(AssertionError, match="output"):
        assert_drop_in(Net(act="gelu"), Net(), _images())
    with pytest.raises(AssertionError, match="train-step loss"):
        assert_drop_in(Net(p=0.1), Net(), _images())
    ours = Net()
    ours.extra = nn.Parameter(torch.zeros(1))
    with pytest.raises(AssertionError, match=r"unexpected .*: extra"):
        assert_drop_in(ours, Net(), _images())
