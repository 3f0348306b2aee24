"""Metrics from torchmetrics (the ``train`` extra), imported only when a spec names one.

Classification metrics (f1, precision, recall, iou, dice, auroc) take their task
from the output's loss when the spec does not give it: ``multiclass`` with dim 1's
size as ``num_classes`` after CrossEntropyLoss, NLLLoss or MultiMarginLoss,
``binary`` after BCELoss or BCEWithLogitsLoss. Outputs are read as logits (as those
losses take them): probabilities are a softmax over dim 1 or a sigmoid, except
after BCELoss (probabilities already) and NLLLoss (log-probabilities).

Each metric keeps its states on the run's device; torchmetrics adds them up over
the processes of a distributed run when the value is computed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["LIBRARY_METRICS", "LibraryMetric", "Prepare", "torchmetrics_missing"]

Prepare = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

_CLASS_INDEX = frozenset({"CrossEntropyLoss", "NLLLoss", "MultiMarginLoss"})
_BINARY = frozenset({"BCELoss", "BCEWithLogitsLoss"})
TASKS = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class LibraryMetric:
    """A torchmetrics metric by nnspec's name for it."""

    name: str
    higher_is_better: bool
    doc: str
    classification: bool
    #: The metric's arguments -> a torchmetrics.Metric
    make: Callable[[dict[str, Any]], Any]


def torchmetrics_missing() -> bool:
    return importlib.util.find_spec("torchmetrics") is None


def _classification(cls_name: str, **defaults: Any) -> Callable[[dict[str, Any]], Any]:
    def make(arguments: dict[str, Any]) -> Any:
        import torchmetrics

        given = dict(arguments)
        if given.get("task") == "multiclass":
            for key, value in defaults.items():
                given.setdefault(key, value)
        return getattr(torchmetrics, cls_name)(**given)

    return make


def _plain(path: str, cls_name: str) -> Callable[[dict[str, Any]], Any]:
    def make(arguments: dict[str, Any]) -> Any:
        module = importlib.import_module(path)
        return getattr(module, cls_name)(**arguments)

    return make


LIBRARY_METRICS: dict[str, LibraryMetric] = {
    m.name: m
    for m in [
        LibraryMetric(
            "f1",
            True,
            "F1 score (torchmetrics F1Score; multiclass: macro average)",
            True,
            _classification("F1Score", average="macro"),
        ),
        LibraryMetric(
            "precision",
            True,
            "precision (torchmetrics Precision; multiclass: macro average)",
            True,
            _classification("Precision", average="macro"),
        ),
        LibraryMetric(
            "recall",
            True,
            "recall (torchmetrics Recall; multiclass: macro average)",
            True,
            _classification("Recall", average="macro"),
        ),
        LibraryMetric(
            "iou",
            True,
            "intersection over union, the Jaccard index (torchmetrics JaccardIndex)",
            True,
            _classification("JaccardIndex"),
        ),
        LibraryMetric(
            "dice",
            True,
            "Dice coefficient 2|A and B| / (|A| + |B|) over all validation samples "
            "(the F1 score; multiclass: macro average over classes)",
            True,
            _classification("F1Score", average="macro"),
        ),
        LibraryMetric(
            "auroc",
            True,
            "area under the ROC curve (torchmetrics AUROC)",
            True,
            _classification("AUROC"),
        ),
        LibraryMetric(
            "r2",
            True,
            "coefficient of determination R² (torchmetrics R2Score)",
            False,
            _plain("torchmetrics", "R2Score"),
        ),
        LibraryMetric(
            "perplexity",
            False,
            "exp of the mean cross-entropy of logits with class dim 1 "
            "(torchmetrics Perplexity)",
            False,
            _plain("torchmetrics.text", "Perplexity"),
        ),
    ]
}
LIBRARY_METRICS["jaccard"] = LibraryMetric(
    "jaccard",
    True,
    "the same as iou",
    True,
    LIBRARY_METRICS["iou"].make,
)


def default_arguments(
    metric: LibraryMetric,
    given: Mapping[str, Any],
    loss_op: str,
    classes: int | None,
    ignore_index: int | None,
) -> dict[str, Any] | str:
    """The metric's arguments with what the loss implies filled in, or why they
    cannot be (a message)."""
    arguments = dict(given)
    if metric.classification and "task" not in arguments:
        if loss_op in _CLASS_INDEX:
            if classes is None:
                return (
                    "give task and num_classes: dim 1 of the output (the classes) "
                    "has no fixed size"
                )
            arguments.update(task="multiclass", num_classes=classes)
        elif loss_op in _BINARY:
            arguments["task"] = "binary"
        else:
            return (
                "give task: (binary, multiclass with num_classes, or multilabel with "
                "num_labels); it follows the loss only for CrossEntropyLoss, "
                "NLLLoss, MultiMarginLoss, BCELoss and BCEWithLogitsLoss"
            )
    task = arguments.get("task")
    if metric.classification and task not in TASKS:
        return f"task {task!r} is not one of {', '.join(TASKS)}"
    wants_ignore = (metric.classification and task == "multiclass") or (
        metric.name == "perplexity"
    )
    if wants_ignore and ignore_index is not None:
        arguments.setdefault("ignore_index", ignore_index)
    return arguments


def preparation(
    metric: LibraryMetric, arguments: Mapping[str, Any], loss_op: str
) -> Prepare:
    """How an output and its target become the metric's (preds, target)."""
    if metric.name == "perplexity":
        return _perplexity
    if metric.name == "r2":
        return _regression
    if arguments.get("task") == "multiclass":

        def multiclass(output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
            scores = output.float()
            probs = scores.exp() if loss_op == "NLLLoss" else scores.softmax(dim=1)
            if target.is_floating_point() and target.shape == output.shape:
                target = target.argmax(dim=1)  # one-hot or soft targets
            return probs, target.long()

        return multiclass
    multilabel = arguments.get("task") == "multilabel"

    def binary(output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        scores = output.float()
        probs = scores if loss_op == "BCELoss" else scores.sigmoid()
        labels = (target > 0.5).long() if target.is_floating_point() else target.long()
        if multilabel or probs.shape == labels.shape:
            return probs, labels
        return probs.reshape(-1), labels.reshape(-1)  # [B, 1] against [B]

    return binary


def _regression(output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    n = output.shape[0]
    preds, target = output.float().reshape(n, -1), target.float().reshape(n, -1)
    if preds.shape[1] == 1:
        return preds.reshape(-1), target.reshape(-1)
    return preds, target


def _perplexity(output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Logits [B, V] or [B, V, L...] (classes in dim 1, as CrossEntropyLoss takes
    them) as torchmetrics takes them: [B, L, V]."""
    n = output.shape[0]
    logits = output.float()
    if logits.dim() == 2:
        return logits.unsqueeze(1), target.reshape(n, 1).long()
    vocabulary = logits.shape[1]
    logits = logits.movedim(1, -1).reshape(n, -1, vocabulary)
    return logits, target.reshape(n, -1).long()
