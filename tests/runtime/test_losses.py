"""Loss terms: tensor arguments, custom classes from allowed imports, named inputs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import nnspec
from nnspec.runtime import Trainer
from nnspec.runtime.settings import Settings, resolve_settings
from tests.runtime.conftest import records

# Two outputs of four features: a mean and a (positive) variance.
REG = """\
nnspec: 1
name: Reg
inputs:
  x: [4]
layers:
  - {op: Linear, name: mean, out_features: 2}
  - {op: Linear, name: raw_var, in: x, out_features: 2}
  - {op: Softplus, name: var}
outputs: {mean: mean, var: var}
train:
  data: {source: synthetic}
"""
# The loss: line of the spec, where each test's loss entry is written.
LOSS_LINE = 12
CUSTOM = "tests.runtime.custom_losses"


def spec_text(train: str) -> str:
    return REG + textwrap.indent(textwrap.dedent(train), "  ")


def resolve(train: str, allow: tuple[str, ...] = ()) -> Settings:
    spec = nnspec.loads(spec_text(train), path="reg.yaml", allow_imports=allow)
    return resolve_settings(spec, allow_imports=allow)


def error(train: str, allow: tuple[str, ...] = ()) -> str:
    with pytest.raises(nnspec.SpecError) as info:
        resolve(train, allow)
    return str(info.value)


def at(column: int, line: int = LOSS_LINE) -> str:
    return f"reg.yaml:{line}:{column}: error: "


def test_list_arguments_are_float_tensors_of_the_loss_class() -> None:
    settings = resolve(
        "loss: {mean: {op: BCEWithLogitsLoss, target: y, args: {pos_weight: [5.0, 1]}}}\n"
    )
    term = settings.losses[0]
    assert torch.equal(term.module.pos_weight, torch.tensor([5.0, 1.0]))
    out, y = torch.randn(8, 2), torch.randint(0, 2, (8, 2)).float()
    reference = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([5.0, 1.0]))
    assert torch.equal(term({"mean": out}, {"y": y}), reference(out, y))
    term.to(torch.device("meta"))  # the tensors are built on the run's device
    assert term.module.pos_weight.device.type == "meta"


def test_class_weights_under_args_and_the_terms_weight_beside_them() -> None:
    settings = resolve(
        "loss: {mean: {op: CrossEntropyLoss, target: y, weight: 0.5,\n"
        "              label_smoothing: 0.1, args: {weight: [1.0, 3.0]}}}\n"
    )
    term = settings.losses[0]
    assert term.weight == 0.5
    assert torch.equal(term.module.weight, torch.tensor([1.0, 3.0]))
    assert term.module.label_smoothing == 0.1


def test_argument_mistakes_are_located() -> None:
    assert error(
        "loss: {mean: {op: CrossEntropyLoss, target: y, label_smoothing: 0.1, "
        "args: {label_smoothing: 0.2}}}\n"
    ) == at(79) + (
        "loss CrossEntropyLoss: 'label_smoothing' is given twice, under args and "
        "beside it"
    )
    assert error(
        "loss: {mean: {op: CrossEntropyLoss, target: y, args: {smoothing: 0.2}}}\n"
    ).startswith(
        at(57) + "loss CrossEntropyLoss has no argument 'smoothing' (did you mean "
        "'label_smoothing'?)"
    )
    assert error(
        "loss: {mean: {op: CrossEntropyLoss, target: y, args: {weight: [[1.0], 2.0]}}}\n"
    ).startswith(at(65) + "loss CrossEntropyLoss: weight is not a tensor")


def test_a_custom_loss_needs_its_package_allowed() -> None:
    train = f"loss: {{mean: {{op: '{CUSTOM}:ScaledL1', target: y}}}}\n"
    assert error(train) == at(21) + (
        f"custom loss '{CUSTOM}:ScaledL1' imports package 'tests', which is not "
        "allowed; allow it with --allow-import tests (nnspec train) or "
        "allow_imports=['tests'] (Trainer)"
    )
    assert (
        error(f"loss: {{mean: {{op: '{CUSTOM}:max_error', target: y}}}}\n", ("tests",))
        == at(21) + f"custom loss '{CUSTOM}:max_error' is not an nn.Module class"
    )
    assert "unknown loss 'DiceLoss'" in error(
        "loss: {mean: {op: DiceLoss, target: y}}\n"
    )


def test_a_custom_loss_takes_its_arguments_and_tensors() -> None:
    from tests.runtime.custom_losses import ScaledL1

    settings = resolve(
        f"loss: {{mean: {{op: '{CUSTOM}:ScaledL1', target: y, scale: 2.0,\n"
        "              args: {per_feature: [1.0, 0.5]}}}\n",
        ("tests",),
    )
    term = settings.losses[0]
    assert isinstance(term.module, ScaledL1)
    out, y = torch.randn(8, 2), torch.randn(8, 2)
    expected = 2.0 * ((out - y).abs() * torch.tensor([1.0, 0.5])).mean()
    assert torch.allclose(term({"mean": out}, {"y": y}), expected)


def test_inputs_name_each_forward_argument() -> None:
    settings = resolve(
        "loss: {mean: {op: GaussianNLLLoss, inputs: {input: mean, target: y, var: var}}}\n"
    )
    term = settings.losses[0]
    assert (term.target, term.data_names) == ("y", ["y"])
    mean, var, y = torch.randn(8, 2), torch.rand(8, 2) + 0.1, torch.randn(8, 2)
    value = term({"mean": mean, "var": var}, {"y": y})
    assert torch.equal(value, nn.GaussianNLLLoss()(mean, y, var))


def test_ctc_loss_takes_outputs_and_three_data_arrays() -> None:
    settings = resolve(
        "loss:\n"
        "  mean:\n"
        "    op: CTCLoss\n"
        "    inputs: {log_probs: mean, targets: tokens, input_lengths: frames,\n"
        "             target_lengths: length}\n"
    )
    term = settings.losses[0]
    assert term.data_names == ["tokens", "frames", "length"]
    log_probs = torch.randn(10, 3, 5).log_softmax(2)  # (time, batch, classes)
    data = {
        "tokens": torch.randint(1, 5, (3, 4)),
        "frames": torch.full((3,), 10),
        "length": torch.tensor([4, 3, 2]),
    }
    reference = nn.CTCLoss()(log_probs, data["tokens"], data["frames"], data["length"])
    assert torch.equal(term({"mean": log_probs}, data), reference)


def test_input_mistakes_are_located() -> None:
    assert error(
        "loss: {mean: {op: GaussianNLLLoss, inputs: {inpt: mean, target: y, var: var}}}\n"
    ).startswith(
        at(47) + "loss GaussianNLLLoss takes no input 'inpt' (did you mean 'input'?)"
    )
    assert error(
        "loss: {mean: {op: GaussianNLLLoss, inputs: {input: mean, target: y}}}\n"
    ).startswith(at(38) + "inputs of loss GaussianNLLLoss leave out var")
    assert error(
        "loss: {mean: {op: GaussianNLLLoss, target: y, inputs: {input: mean, "
        "target: y, var: var}}}\n"
    ).startswith(at(38) + "give target or inputs, not both")
    assert error("loss: {mean: {op: MSELoss}}\n") == at(10) + (
        "train.loss.mean is missing the required key 'target'"
    )
    assert (
        error("loss: {mean: {op: MSELoss, inputs: {input: var, target: y}}}\n")
        == at(30) + "inputs of the loss of 'mean' do not use output 'mean'"
    )


def _regression_data(path: Path, n: int = 64) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    y = x[:, :2] * 2 + 0.1 * torch.randn(n, 2, generator=generator)
    torch.save({"x": x, "y": y}, path)


def test_a_run_trains_with_a_loss_of_three_inputs(tmp_path: Path) -> None:
    _regression_data(tmp_path / "data.pt")
    spec = tmp_path / "reg.yaml"
    spec.write_text(
        spec_text(
            "loss: {mean: {op: GaussianNLLLoss, inputs: {input: mean, target: y, "
            "var: var}}}\n"
            "metrics: {mean: [mse]}\n"
            "steps: 6\n"
            "log_every: 1\n"
        ).replace(
            "data: {source: synthetic}",
            "data: {source: {pt: data.pt}, batch_size: 8, val_fraction: 0.25}",
        ),
        encoding="utf-8",
    )
    result = Trainer(spec, tmp_path / "run", progress=False).fit()
    assert result.status == "completed"
    logged = records(tmp_path / "run")
    val = [r for r in logged if "val_loss" in r][-1]
    assert {"val_loss", "val_mse"} <= set(val)
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_a_loss_without_targets_trains_on_synthetic_inputs(tmp_path: Path) -> None:
    spec = tmp_path / "triplet.yaml"
    spec.write_text(
        "nnspec: 1\nname: Triplet\ninputs: {x: [4]}\n"
        "layers:\n"
        "  - {op: Linear, name: anchor, out_features: 3}\n"
        "  - {op: Linear, name: positive, in: x, out_features: 3}\n"
        "  - {op: Linear, name: negative, in: x, out_features: 3}\n"
        "outputs: {anchor: anchor, positive: positive, negative: negative}\n"
        "train:\n"
        "  data: {source: {synthetic: 32}, batch_size: 8, val_fraction: 0.25}\n"
        "  loss:\n"
        "    anchor:\n"
        "      op: TripletMarginLoss\n"
        "      margin: 0.5\n"
        "      inputs: {anchor: anchor, positive: positive, negative: negative}\n"
        "  steps: 3\n",
        encoding="utf-8",
    )
    result = Trainer(spec, tmp_path / "run", progress=False).fit()
    assert result.status == "completed" and result.step == 3
    val = [r for r in records(tmp_path / "run") if "val_loss" in r][-1]
    assert val["val_loss"] >= 0
