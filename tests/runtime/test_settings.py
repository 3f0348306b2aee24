"""The train section checked against torch: positions, suggestions, --set overrides."""

from __future__ import annotations

import textwrap

import pytest
import torch

import nnspec
from nnspec.runtime.settings import resolve_settings
from tests.runtime.conftest import TINY_MODEL

# TINY_MODEL has 12 lines; `train:` is line 13, its first key line 14.


def settings_error(train: str, overrides: dict | None = None) -> str:
    text = TINY_MODEL + "train:\n" + textwrap.indent(textwrap.dedent(train), "  ")
    spec = nnspec.loads(text, path="tiny.yaml")
    with pytest.raises(nnspec.SpecError) as info:
        resolve_settings(spec, overrides)
    return str(info.value)


BASE = """\
data: {source: synthetic}
loss: {logits: {op: CrossEntropyLoss, target: label}}
"""


def resolve(train: str, overrides: dict | None = None):
    text = TINY_MODEL + "train:\n" + textwrap.indent(textwrap.dedent(train), "  ")
    return resolve_settings(nnspec.loads(text, path="tiny.yaml"), overrides)


def test_names_resolve_to_torch_classes_with_their_arguments() -> None:
    settings = resolve(
        BASE
        + "optimizer: {op: SGD, lr: 0.1, momentum: 0.9}\n"
        + "scheduler: {op: StepLR, step_size: 2}\n"
    )
    assert settings.optimizer is torch.optim.SGD
    assert settings.optimizer_args == {"lr": 0.1, "momentum": 0.9}
    assert settings.scheduler is torch.optim.lr_scheduler.StepLR
    assert settings.schedule_length_arg is None
    assert isinstance(settings.losses[0].module, torch.nn.CrossEntropyLoss)
    assert settings.device == torch.device("cpu")
    assert settings.compile is None


def test_one_cycle_without_a_length_gets_the_planned_one() -> None:
    settings = resolve(BASE + "scheduler: {op: OneCycleLR, max_lr: 0.1}\n")
    assert settings.schedule_length_arg == "total_steps"
    given = resolve(BASE + "scheduler: {op: OneCycleLR, max_lr: 0.1, total_steps: 9}\n")
    assert given.schedule_length_arg is None


def test_unknown_optimizer_is_reported_at_its_op_with_a_suggestion() -> None:
    message = settings_error(BASE + "optimizer: {op: AdamX, lr: 0.1}\n")
    assert message.startswith(
        "tiny.yaml:16:19: error: unknown optimizer 'AdamX' (did you mean 'Adam'?); "
        "known: ASGD, Adadelta"
    )


def test_unknown_loss_is_reported_at_its_op_with_a_suggestion() -> None:
    message = settings_error(
        "data: {source: synthetic}\n"
        "loss:\n"
        "  logits: {op: CrossEntropyLos, target: label}\n"
    )
    assert message.startswith(
        "tiny.yaml:16:18: error: unknown loss 'CrossEntropyLos' "
        "(did you mean 'CrossEntropyLoss'?)"
    )


def test_unknown_loss_argument_names_the_close_one() -> None:
    message = settings_error(
        "data: {source: synthetic}\n"
        "loss:\n"
        "  logits: {op: CrossEntropyLoss, target: label, label_smothing: 0.1}\n"
    )
    assert message.startswith(
        "tiny.yaml:16:51: error: loss CrossEntropyLoss has no argument "
        "'label_smothing' (did you mean 'label_smoothing'?)"
    )


def test_loss_for_an_output_the_model_lacks() -> None:
    message = settings_error(
        "data: {source: synthetic}\nloss: {logit: {op: MSELoss, target: y}}\n"
    )
    assert message == (
        "tiny.yaml:15:10: error: the model has no output 'logit' "
        "(did you mean 'logits'?); its outputs: logits"
    )


def test_a_bad_optimizer_value_is_torchs_message_at_the_optimizer() -> None:
    message = settings_error(BASE + "optimizer: {op: AdamW, lr: -1.0}\n")
    assert message == (
        "tiny.yaml:16:14: error: optimizer AdamW: Invalid learning rate: -1.0"
    )


def test_argument_supplied_by_the_trainer_is_refused() -> None:
    message = settings_error(BASE + "optimizer: {op: SGD, lr: 0.1, params: []}\n")
    assert message.startswith(
        "tiny.yaml:16:33: error: optimizer SGD: 'params' is set by the trainer"
    )


def test_unknown_scheduler_and_metric_and_monitor() -> None:
    assert settings_error(BASE + "scheduler: {op: StepLr, step_size: 1}\n").startswith(
        "tiny.yaml:16:19: error: unknown scheduler 'StepLr' (did you mean 'StepLR'?)"
    )
    assert settings_error(BASE + "metrics: {logits: [acuracy]}\n").startswith(
        "tiny.yaml:16:22: error: unknown metric 'acuracy' (did you mean 'accuracy'?)"
    )
    assert settings_error(
        BASE + "metrics: {logits: [accuracy]}\nmonitor: val_acc\n"
    ) == (
        "tiny.yaml:17:12: error: monitor 'val_acc' is not a validation value "
        "(did you mean 'val_accuracy'?); validation logs: val_loss, val_accuracy"
    )


def test_metrics_of_an_output_without_a_loss_need_its_target() -> None:
    two_outputs = TINY_MODEL.replace(
        "outputs: {logits: head}", "outputs: {logits: head, features: hidden}"
    )
    text = (
        two_outputs
        + "train:\n"
        + textwrap.indent(BASE + "metrics: {features: [mse]}\n", "  ")
    )
    with pytest.raises(nnspec.SpecError) as info:
        resolve_settings(nnspec.loads(text, path="tiny.yaml"))
    assert str(info.value).startswith(
        "tiny.yaml:16:13: error: metrics of 'features' compare it with its loss "
        "target, but loss has no entry for 'features'"
    )


def test_float16_mixed_precision_needs_cuda() -> None:
    message = settings_error(BASE + "precision: 16-mixed\ndevice: cpu\n")
    assert message == (
        "tiny.yaml:16:14: error: precision 16-mixed (float16 with a gradient "
        "scaler) needs a CUDA device; this run is on cpu: use bf16-mixed there"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_devices_are_checked() -> None:
    assert settings_error(BASE + "device: gpu\n") == (
        "tiny.yaml:16:11: error: device 'gpu' is not auto, cpu, cuda or cuda:N "
        "(did you mean 'cpu'?)"
    )
    assert settings_error(BASE + "device: cuda:1\n") == (
        "tiny.yaml:16:11: error: device 'cuda:1': CUDA is not available here"
    )
    assert resolve(BASE + "device: auto\n").device == torch.device("cpu")


def test_unknown_compile_backend_is_reported_with_a_suggestion() -> None:
    message = settings_error(BASE + "compile: {backend: inductr}\n")
    assert message.startswith(
        "tiny.yaml:16:22: error: unknown compile backend 'inductr' "
        "(did you mean 'inductor'?)"
    )
    assert resolve(BASE + "compile: true\n").compile == {
        "backend": "inductor",
        "fullgraph": False,
    }


def test_val_and_val_fraction_exclude_each_other() -> None:
    message = settings_error(
        "data: {source: synthetic, val: synthetic, val_fraction: 0.2}\n"
        "loss: {logits: {op: CrossEntropyLoss, target: label}}\n"
    )
    assert message == (
        "tiny.yaml:14:45: error: give either data.val or data.val_fraction, not both"
    )


def test_a_spec_without_a_train_section_cannot_train() -> None:
    spec = nnspec.loads(TINY_MODEL, path="tiny.yaml")
    with pytest.raises(nnspec.SpecError) as info:
        resolve_settings(spec)
    assert "the spec has no train: section" in str(info.value)


def test_overrides_replace_keys_of_the_train_section() -> None:
    settings = resolve(
        BASE + "optimizer: {op: AdamW, lr: 0.01}\nepochs: 3\n",
        {"optimizer.lr": 0.05, "epochs": 1, "compile.backend": "aot_eager"},
    )
    assert settings.optimizer_args == {"lr": 0.05}
    assert settings.train.epochs == 1
    assert settings.compile == {"backend": "aot_eager", "fullgraph": False}


def test_override_mistakes_name_the_override() -> None:
    bad_value = settings_error(
        BASE + "optimizer: {op: AdamW, lr: 0.01}\n", {"optimizer.lr": "fast"}
    )
    assert bad_value.startswith("tiny.yaml:16:14: error: optimizer AdamW: ")
    assert bad_value.endswith("(from --set optimizer.lr=fast)")
    unknown = settings_error(BASE, {"epoch": 2})
    assert unknown.startswith(
        "tiny.yaml:13:1: error: unknown key 'epoch' in train (did you mean 'epochs'?)"
    )
    assert unknown.endswith("(from --set epoch=2)")
    bad_optimizer = settings_error(BASE, {"optimizer.op": "Adm"})
    assert "unknown optimizer 'Adm' (did you mean 'Adam'?)" in bad_optimizer
    assert bad_optimizer.endswith("(from --set optimizer.op=Adm)")
