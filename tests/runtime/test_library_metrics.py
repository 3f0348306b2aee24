"""torchmetrics and custom metrics: values against scikit-learn, accumulation over
batches, task inference from the loss, and the sum over two processes."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path

import pytest
import torch
from sklearn import metrics as sk

import nnspec
from nnspec.runtime.metrics import MetricSpec, Tally
from nnspec.runtime.settings import resolve_settings

CLASSIFIER = """\
nnspec: 1
name: Cls
inputs:
  x: [6]
layers:
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head}
train:
  data: {source: synthetic}
"""
CUSTOM = "tests.runtime.custom_losses"


def metrics_of(
    train: str, model: str = CLASSIFIER, allow: tuple[str, ...] = ()
) -> list[MetricSpec]:
    text = model + textwrap.indent(textwrap.dedent(train), "  ")
    spec = nnspec.loads(text, path="m.yaml", allow_imports=allow)
    return resolve_settings(spec, allow_imports=allow).metrics


def tally(
    metrics: list[MetricSpec], output: torch.Tensor, target: torch.Tensor
) -> dict[str, float]:
    """The metrics over three uneven batches of the samples."""
    counter = Tally(metrics, torch.device("cpu"))
    for index in torch.tensor_split(torch.arange(len(output)), [5, 11]):
        counter.update({"logits": output[index]}, {"y": target[index]})
    return counter.values()


def classes(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(0, 3, (n,), generator=generator)
    logits = torch.randn(n, 3, generator=generator) + 1.5 * torch.nn.functional.one_hot(
        target, 3
    )
    return logits, target


def test_multiclass_metrics_follow_cross_entropy_and_match_sklearn() -> None:
    metrics = metrics_of(
        "loss: {logits: {op: CrossEntropyLoss, target: y}}\n"
        "metrics: {logits: [f1, precision, recall, iou, dice, auroc, accuracy]}\n"
    )
    logits, target = classes()
    values = tally(metrics, logits, target)
    predicted = logits.argmax(1).numpy()
    y = target.numpy()
    probs = logits.softmax(1).numpy()
    expected = {
        "val_f1": sk.f1_score(y, predicted, average="macro"),
        "val_precision": sk.precision_score(y, predicted, average="macro"),
        "val_recall": sk.recall_score(y, predicted, average="macro"),
        "val_iou": sk.jaccard_score(y, predicted, average="macro"),
        "val_dice": sk.f1_score(y, predicted, average="macro"),
        "val_auroc": sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"),
        "val_accuracy": sk.accuracy_score(y, predicted),
    }
    assert values == pytest.approx(expected, abs=1e-5)
    assert all(m.higher_is_better for m in metrics)


def test_binary_metrics_follow_bce_with_logits() -> None:
    model = CLASSIFIER.replace("out_features: 3", "out_features: 1")
    metrics = metrics_of(
        "loss: {logits: {op: BCEWithLogitsLoss, target: y}}\n"
        "metrics: {logits: [dice, auroc, {op: precision, threshold: 0.7}]}\n",
        model,
    )
    generator = torch.Generator().manual_seed(5)
    target = torch.randint(0, 2, (30, 1), generator=generator).float()
    logits = torch.randn(30, 1, generator=generator) + target
    values = tally(metrics, logits, target)
    y, p = target.flatten().numpy(), logits.sigmoid().flatten().numpy()
    predicted = p > 0.5
    tp = (predicted & (y == 1)).sum()
    dice = 2 * tp / (predicted.sum() + (y == 1).sum())
    assert values == pytest.approx(
        {
            "val_dice": dice,
            "val_auroc": sk.roc_auc_score(y, p),
            "val_precision": sk.precision_score(y, p > 0.7),
        },
        abs=1e-5,
    )


def test_r2_and_perplexity() -> None:
    regression = metrics_of(
        "loss: {logits: {op: MSELoss, target: y}}\nmetrics: {logits: [r2]}\n"
    )
    generator = torch.Generator().manual_seed(7)
    target = torch.randn(24, 3, generator=generator)
    output = target + 0.5 * torch.randn(24, 3, generator=generator)
    assert tally(regression, output, target)["val_r2"] == pytest.approx(
        sk.r2_score(target.numpy(), output.numpy()), abs=1e-5
    )
    language = metrics_of(
        "loss: {logits: {op: CrossEntropyLoss, target: y}}\n"
        "metrics: {logits: [perplexity]}\n"
    )
    logits, tokens = classes()
    cross_entropy = torch.nn.functional.cross_entropy(logits, tokens)
    value = tally(language, logits, tokens)["val_perplexity"]
    assert value == pytest.approx(cross_entropy.exp().item(), rel=1e-5)
    assert not language[0].higher_is_better


def test_classification_metrics_need_a_task_the_loss_does_not_give() -> None:
    with pytest.raises(nnspec.SpecError) as info:
        metrics_of(
            "loss: {logits: {op: MSELoss, target: y}}\nmetrics: {logits: [f1]}\n"
        )
    assert str(info.value).startswith(
        "m.yaml:11:22: error: metric f1 of 'logits': give task: (binary, multiclass "
        "with num_classes, or multilabel with num_labels)"
    )
    given = metrics_of(
        "loss: {logits: {op: MSELoss, target: y}}\n"
        "metrics: {logits: [{op: f1, task: multiclass, num_classes: 3, "
        "average: micro, name: f1_micro}]}\n"
    )
    logits, target = classes()
    assert tally(given, logits, target)["val_f1_micro"] == pytest.approx(
        sk.f1_score(target.numpy(), logits.argmax(1).numpy(), average="micro")
    )


def test_custom_metrics_a_function_and_a_torchmetrics_class() -> None:
    train = (
        "loss: {logits: {op: MSELoss, target: y}}\n"
        f"metrics: {{logits: ['{CUSTOM}:max_error', '{CUSTOM}:SignAgreement']}}\n"
        "monitor: val_SignAgreement\n"
    )
    with pytest.raises(nnspec.SpecError) as info:
        metrics_of(train)
    assert "imports package 'tests', which is not allowed" in str(info.value)
    metrics = metrics_of(train, allow=("tests",))
    output, target = torch.randn(16, 3), torch.randn(16, 3)
    values = tally(metrics, output, target)
    # The function's batch values, weighted by the batches' samples.
    batches = torch.tensor_split(torch.arange(16), [5, 11])
    expected = sum((output[i] - target[i]).abs().max().item() * len(i) for i in batches)
    assert values["val_max_error"] == pytest.approx(expected / 16)
    agreement = ((output > 0) == (target > 0)).float().mean().item()
    assert values["val_SignAgreement"] == pytest.approx(agreement)
    assert [m.higher_is_better for m in metrics] == [False, True]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_values(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: its half of the batches, values summed over both."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        metrics = metrics_of(
            "loss: {logits: {op: CrossEntropyLoss, target: y}}\n"
            "metrics: {logits: [accuracy, f1, auroc]}\n"
        )
        logits, target = classes()
        counter = Tally(metrics, torch.device("cpu"))
        for index in torch.tensor_split(torch.arange(40), 4)[rank::2]:
            counter.update({"logits": logits[index]}, {"y": target[index]})

        def total(tensor: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(tensor)
            return tensor

        values = counter.values(total)
        Path(out, f"{rank}.json").write_text(json.dumps(values))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed")
def test_two_processes_give_the_values_of_one(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_rank_values, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    one = tally(
        metrics_of(
            "loss: {logits: {op: CrossEntropyLoss, target: y}}\n"
            "metrics: {logits: [accuracy, f1, auroc]}\n"
        ),
        *classes(),
    )
    for rank in (0, 1):
        values = json.loads((tmp_path / f"{rank}.json").read_text())
        assert values == pytest.approx(one, abs=1e-6)


def test_a_missing_torchmetrics_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nnspec.runtime.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "torchmetrics_missing", lambda: True)
    with pytest.raises(nnspec.SpecError) as info:
        metrics_of(
            "loss: {logits: {op: CrossEntropyLoss, target: y}}\n"
            "metrics: {logits: [accuracy, f1]}\n"
        )
    assert str(info.value).startswith(
        "m.yaml:11:32: error: metric f1 needs torchmetrics, which the core install "
        "leaves out: pip install 'nnspec[train]'"
    )
