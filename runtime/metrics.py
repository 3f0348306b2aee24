"""Validation metrics. The built-in ones (``METRICS``) each sum a score over a batch
without a host sync; torchmetrics' (library_metrics.py) and custom ones (a
torchmetrics.Metric class or a function from an allowed package) keep their own
states. ``Tally`` adds them up over a validation set, in all processes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..compiler.values import TensorValue
from ..spec.errors import SpecError, suggest
from ..spec.text import first_line
from ..spec.train import MetricTerm, TrainSpec
from ..spec.yaml_source import Path
from .custom import is_custom, resolve_custom
from .library_metrics import (
    LIBRARY_METRICS,
    LibraryMetric,
    Prepare,
    default_arguments,
    preparation,
    torchmetrics_missing,
)
from .losses import LossSpec

__all__ = [
    "METRICS",
    "CustomMetric",
    "Metric",
    "MetricSpec",
    "Tally",
    "resolve_metrics",
]


@dataclass(frozen=True)
class Metric:
    """A metric: the sum of its score over a batch and the number of scored items.

    The value over a validation set is the sums added up, divided by the counts.
    """

    name: str
    higher_is_better: bool
    score: Callable[[Tensor, Tensor], tuple[Tensor, int]]
    doc: str


def _class_targets(output: Tensor, target: Tensor) -> Tensor:
    """Class indices from index targets, or from one-hot/soft targets shaped like output."""
    if target.is_floating_point() and target.shape == output.shape:
        return target.argmax(dim=1)
    return target


def _accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    target = _class_targets(output, target)
    return (output.argmax(dim=1) == target).sum(), target.numel()


def _top5_accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    target = _class_targets(output, target)
    k = min(5, output.shape[1])
    top = output.topk(k, dim=1).indices  # (B, k, ...)
    hits = (top == target.unsqueeze(1)).any(dim=1)
    return hits.sum(), target.numel()


def _binary_accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return ((output > 0) == (target > 0.5)).sum(), target.numel()


def _mse(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    diff = output.float() - target.float()
    return (diff * diff).sum(), diff.numel()


def _mae(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return (output.float() - target.float()).abs().sum(), output.numel()


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric(
            "accuracy",
            True,
            _accuracy,
            "argmax over dim 1 equals the class index (or the argmax of one-hot targets)",
        ),
        Metric("top5_accuracy", True, _top5_accuracy, "the class is among the top 5"),
        Metric(
            "binary_accuracy",
            True,
            _binary_accuracy,
            "logit > 0 agrees with target > 0.5 (for BCEWithLogitsLoss)",
        ),
        Metric("mse", False, _mse, "mean squared error"),
        Metric("mae", False, _mae, "mean absolute error"),
    ]
}


@dataclass(frozen=True)
class CustomMetric:
    """A metric from an allowed import: a torchmetrics.Metric class or a function
    ``(output, target) -> the batch's mean`` (averaged over samples)."""

    name: str
    higher_is_better: bool
    doc: str


AnyMetric = Metric | LibraryMetric | CustomMetric


@dataclass
class MetricSpec:
    """A metric of one output, logged as ``key`` (``val_accuracy``).

    ``module`` is the torchmetrics.Metric that keeps its states (torchmetrics' and
    custom classes), ``function`` a custom function; built-in metrics have neither.
    """

    output: str
    target: str
    metric: AnyMetric
    key: str
    module: Any = None
    prepare: Prepare | None = None
    function: Callable[[Tensor, Tensor], Any] | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.metric.higher_is_better


Fail = Callable[..., SpecError]


def metric_names() -> list[str]:
    """Every metric a spec may name."""
    return [*METRICS, *LIBRARY_METRICS]


def resolve_metrics(
    train: TrainSpec,
    outputs: Mapping[str, TensorValue],
    losses: list[LossSpec],
    fail: Fail,
    allow_imports: frozenset[str] = frozenset(),
) -> list[MetricSpec]:
    """The train section's metrics, checked and built; mistakes at their lines."""
    terms = {term.output: term for term in losses}
    entries = [
        (output, i, _entry(entry))
        for output, names in train.metrics.items()
        for i, entry in enumerate(names)
    ]
    uses: dict[str, int] = {}
    for _, _, (op, name, _, _) in entries:
        base = name or _base_name(op)
        uses[base] = uses.get(base, 0) + 1
    for output in train.metrics:
        if output not in outputs:
            raise fail(
                ("metrics", output),
                f"the model has no output {output!r}{suggest(output, list(outputs))}; "
                f"its outputs: {', '.join(outputs)}",
                key=True,
            )
        if output not in terms:
            raise fail(
                ("metrics", output),
                f"metrics of {output!r} compare it with its loss target, but loss "
                f"has no entry for {output!r}",
                key=True,
            )
        if terms[output].target is None:
            raise fail(
                ("metrics", output),
                f"metrics of {output!r} compare it with its loss target, and its "
                "loss has no data array among its inputs",
                key=True,
            )
    found: list[MetricSpec] = []
    keys: set[str] = set()
    for output, i, (op, name, arguments, higher) in entries:
        path: Path = ("metrics", output, i)
        term = terms[output]
        assert term.target is not None
        base = name or _base_name(op)
        key = f"val_{base}" if uses[base] == 1 else f"val_{output}_{base}"
        if key in keys or key == "val_loss" or key.startswith("val_loss_"):
            raise fail(path, f"two values would be logged as {key}: give a name:")
        keys.add(key)
        spec = MetricSpec(output, term.target, METRICS.get(op), key)  # type: ignore[arg-type]
        if op in METRICS:
            _builtin(op, output, arguments, outputs[output], path, fail)
        elif op in LIBRARY_METRICS:
            _library(
                spec, LIBRARY_METRICS[op], arguments, term, outputs[output], path, fail
            )
        elif is_custom(op):
            _custom(spec, op, arguments, higher, allow_imports, path, fail)
        else:
            known = metric_names()
            raise fail(
                _op_path(path, train.metrics[output][i]),
                f"unknown metric {op!r}{suggest(op, known)}; known: "
                f"{', '.join(known)}, or package.module:Name (an allowed import)",
            )
        if higher is not None and not isinstance(spec.metric, CustomMetric):
            raise fail(
                (*path, "higher_is_better"),
                f"higher_is_better is for custom metrics; {op} is better "
                f"{'higher' if spec.metric.higher_is_better else 'lower'}",
                key=True,
            )
        found.append(spec)
    return found


def _entry(
    entry: str | MetricTerm,
) -> tuple[str, str | None, dict[str, Any], bool | None]:
    if isinstance(entry, str):
        return entry, None, {}, None
    return entry.op, entry.name, entry.arguments, entry.higher_is_better


def _base_name(op: str) -> str:
    return op.rpartition(":")[2] if is_custom(op) else op


def _op_path(path: Path, entry: str | MetricTerm) -> Path:
    return path if isinstance(entry, str) else (*path, "op")


def _builtin(
    op: str,
    output: str,
    arguments: dict[str, Any],
    value: TensorValue,
    path: Path,
    fail: Fail,
) -> None:
    if arguments:
        raise fail(
            (*path, next(iter(arguments))),
            f"metric {op} takes no arguments",
            key=True,
        )
    shape = value.shape
    if op == "top5_accuracy" and len(shape) > 1 and shape[1] <= 5:
        raise fail(
            path,
            f"top5_accuracy of {output!r} would always be 1.0: it has "
            f"{shape[1]} classes (dim 1), and a class is always among the "
            "top 5 of at most 5; use accuracy",
        )


def _library(
    spec: MetricSpec,
    metric: LibraryMetric,
    given: dict[str, Any],
    term: LossSpec,
    value: TensorValue,
    path: Path,
    fail: Fail,
) -> None:
    if torchmetrics_missing():
        raise fail(
            path,
            f"metric {metric.name} needs torchmetrics, which the core install "
            "leaves out: pip install 'nnspec[train]'",
        )
    classes = value.shape[1] if len(value.shape) > 1 else None
    ignore = getattr(term.module, "ignore_index", None)
    arguments = default_arguments(
        metric,
        given,
        term.op,
        classes if isinstance(classes, int) else None,
        ignore if isinstance(ignore, int) else None,
    )
    if isinstance(arguments, str):
        raise fail(path, f"metric {metric.name} of {spec.output!r}: {arguments}")
    try:
        module = metric.make(arguments)
    except (TypeError, ValueError) as exc:
        raise fail(path, f"metric {metric.name}: {first_line(exc)}") from None
    spec.metric, spec.module = metric, module
    spec.prepare = preparation(metric, arguments, term.op)


def _custom(
    spec: MetricSpec,
    op: str,
    arguments: dict[str, Any],
    higher: bool | None,
    allow_imports: frozenset[str],
    path: Path,
    fail: Fail,
) -> None:
    where = (*path, "op") if arguments or higher is not None else path
    found = resolve_custom(op, allow_imports, "metric", where, fail)
    if higher is None:
        own = getattr(found, "higher_is_better", None)
        higher = own if isinstance(own, bool) else False
    spec.metric = CustomMetric(_base_name(op), higher, op)
    if isinstance(found, type):
        if torchmetrics_missing() or not _is_metric_class(found):
            raise fail(
                where,
                f"custom metric {op!r} is a class but not a torchmetrics.Metric; "
                "give a Metric subclass or a function (output, target) -> value",
            )
        try:
            spec.module = found(**arguments)
        except (TypeError, ValueError) as exc:
            raise fail(path, f"metric {op}: {first_line(exc)}") from None
    elif callable(found):
        spec.function = functools.partial(found, **arguments) if arguments else found
    else:
        raise fail(where, f"custom metric {op!r} is neither a class nor a function")


def _is_metric_class(cls: type) -> bool:
    import torchmetrics

    return issubclass(cls, torchmetrics.Metric)


@dataclass
class Tally:
    """The metrics of one pass over validation data: ``update`` per batch (no host
    sync), ``values`` at the end (one reduction over the processes for the sums;
    torchmetrics reduces its own states)."""

    metrics: list[MetricSpec]
    device: torch.device
    scores: Tensor = field(init=False)
    counts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.scores = torch.zeros(len(self.metrics), device=self.device)
        self.counts = [0] * len(self.metrics)
        for m in self.metrics:
            if m.module is not None:
                m.module.to(self.device)
                m.module.reset()

    def update(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> None:
        for i, m in enumerate(self.metrics):
            output, target = outputs[m.output], batch[m.target]
            if m.module is not None:
                if m.prepare is not None:
                    output, target = m.prepare(output, target)
                m.module.update(output, target)
            elif m.function is not None:
                n = target.shape[0] if target.dim() else 1
                value = torch.as_tensor(m.function(output, target), device=self.device)
                self.scores[i] += value.float() * n
                self.counts[i] += n
            else:
                score, count = m.metric.score(output, target)  # type: ignore[union-attr]
                self.scores[i] += score
                self.counts[i] += count

    def values(
        self, reduce_sum: Callable[[Tensor], Tensor] | None = None
    ) -> dict[str, float]:
        """Each metric's value over all the batches (and processes), by key."""
        sums = torch.cat(
            [
                self.scores.double(),
                torch.tensor(self.counts, dtype=torch.float64, device=self.device),
            ]
        )
        if reduce_sum is not None:
            sums = reduce_sum(sums)
        k = len(self.metrics)
        totals = sums.tolist()
        found: dict[str, float] = {}
        for i, m in enumerate(self.metrics):
            if m.module is not None:
                found[m.key] = float(m.module.compute())
                m.module.reset()
            else:
                found[m.key] = totals[i] / max(totals[k + i], 1)
        return found


def batch_values(
    metrics: list[MetricSpec],
    outputs: Mapping[str, Tensor],
    batch: Mapping[str, Tensor],
) -> list[Tensor]:
    """The sums of the built-in and function metrics over one batch (torchmetrics'
    are left out: computing one would reduce over the processes)."""
    found = []
    for m in metrics:
        output, target = outputs[m.output], batch[m.target]
        if m.function is not None:
            found.append(
                torch.as_tensor(m.function(output, target)).float().to(output.device)
            )
        elif m.module is None:
            found.append(m.metric.score(output, target)[0].float())  # type: ignore[union-attr]
    return found
