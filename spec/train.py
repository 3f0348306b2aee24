"""The typed form of a spec's ``train:`` section: how the compiled model trains.

The runtime (``nnspec train``) reads these models. Names that only torch can check
(optimizer, scheduler and loss classes, their arguments, metrics, compile backends)
are checked there, with the same positions and suggestions as here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_COUNT",
    "MAX_IMAGE_SIDE",
    "MAX_SEED",
    "MAX_WORKERS",
    "PRECISIONS",
    "STRATEGIES",
    "CheckpointsSpec",
    "CompileSpec",
    "DataSource",
    "DataSpec",
    "EarlyStopSpec",
    "LogSpec",
    "LossTerm",
    "MetricTerm",
    "NormalizeSpec",
    "OptimizerSpec",
    "SchedulerSpec",
    "SourceSpec",
    "TrainSpec",
    "TransformSpec",
]

Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
PRECISIONS: tuple[str, ...] = ("32-true", "bf16-mixed", "16-mixed")

Strategy = Literal["ddp", "fsdp"]
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")

#: The largest count (batch size, steps, epochs, samples, ...) a spec may ask for.
MAX_COUNT = 2**31 - 1
#: The largest seed: torch, Python and NumPy all take it.
MAX_SEED = 2**32 - 1
#: The most DataLoader worker processes.
MAX_WORKERS = 256

PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WithArguments(BaseModel):
    """A torch class named by ``op``; the other keys are its constructor's arguments."""

    model_config = ConfigDict(extra="allow")

    @property
    def arguments(self) -> dict[str, Any]:
        """The keyword arguments for the class: every key but the reserved ones."""
        return dict(self.model_extra or {})


#: The largest image size (a side, in pixels) a transform may ask for.
MAX_IMAGE_SIDE = 1 << 14

Side = Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]
#: An image size: one side for a square, or [height, width].
ImageSize = Side | Annotated[list[Side], Field(min_length=2, max_length=2)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class NormalizeSpec(_Strict):
    """Per-channel ``(x - mean) / std`` of an image in [0, 1]."""

    mean: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(min_length=1)


class TransformSpec(_Strict):
    """One step of an image source's transforms; exactly one of its keys (padding
    goes with random_crop). Random steps act on training samples only."""

    resize: ImageSize | None = Field(
        None, description="Resize to this size (bilinear; masks: nearest)."
    )
    center_crop: ImageSize | None = Field(
        None, description="Cut this size out of the middle."
    )
    random_crop: ImageSize | None = Field(
        None,
        description="Cut this size out at a random place in training (the middle "
        "for validation and test).",
    )
    padding: Annotated[int, Field(ge=0, le=MAX_IMAGE_SIDE)] | None = Field(
        None, description="With random_crop: pad each side with zeros first."
    )
    horizontal_flip: Probability | None = Field(
        None, description="Flip left-right with this probability, in training."
    )
    vertical_flip: Probability | None = Field(
        None, description="Flip upside down with this probability, in training."
    )
    normalize: NormalizeSpec | None = Field(
        None, description="Subtract a per-channel mean and divide by a std."
    )


class SourceSpec(_Strict):
    """A data source given as a mapping: exactly one of npz, pt, synthetic, csv,
    parquet, images, function, with the keys that go with it."""

    npz: str | None = Field(
        None,
        min_length=1,
        description="A NumPy .npz file, relative to the spec: one array per input "
        "and target name, samples along the first axis.",
    )
    pt: str | None = Field(
        None,
        min_length=1,
        description="A file written by torch.save holding a mapping of name -> "
        "tensor (loaded with weights_only=True), relative to the spec.",
    )
    synthetic: PositiveInt | None = Field(
        None,
        description="This many random samples shaped like the inputs and the "
        "trained outputs.",
    )
    csv: str | None = Field(
        None,
        min_length=1,
        description="A CSV file with a header row, relative to the spec: a row "
        "per sample, numeric feature columns and a target column.",
    )
    parquet: str | None = Field(
        None,
        min_length=1,
        description="A Parquet file (needs pyarrow), relative to the spec: as csv.",
    )
    features: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="csv/parquet: the feature columns, in order. Default: every "
        "column but the target.",
    )
    target: str | None = Field(
        None, min_length=1, description="csv/parquet: the target column."
    )
    target_dtype: Literal["int64", "float32"] | None = Field(
        None,
        description="csv/parquet: int64 (class indices) or float32 (values). "
        "Default: int64 for a class-index loss (CrossEntropyLoss, ...), else float32.",
    )
    images: str | None = Field(
        None,
        min_length=1,
        description="A folder of images, relative to the spec: a subfolder per "
        "class (sorted names are classes 0, 1, ...), or, with masks, the images.",
    )
    masks: str | None = Field(
        None,
        min_length=1,
        description="images: a folder of masks for segmentation, one per image with "
        "the image's stem; a mask's pixel values are class indices.",
    )
    transforms: list[TransformSpec] = Field(
        default_factory=list,
        description="images: transforms applied in order to each image (and, where "
        "geometric, to its mask); random ones act on training samples only.",
    )
    function: str | None = Field(
        None,
        min_length=1,
        description="'package.module:name', a function or Dataset class called with "
        "args (needs --allow-import package).",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="function: keyword arguments for it.",
    )
    paths: list[str] = Field(
        default_factory=list,
        description="function: the names of args that are paths (a string or a "
        "list of strings), resolved relative to the spec.",
    )
    items: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="The input or target name of each position of a tuple item "
        "(an (x, y) Dataset; also csv (features, target) and images (image, "
        "label)). Default: the inputs, then the loss targets, in order.",
    )


DataSource = SourceSpec | str
"""A mapping (``{npz: file}``, ``{csv: file, target: col}``, ``{images: dir}``,
``{function: name, args: {...}}``, ...), or a string: ``synthetic`` (1024 random
samples) or ``package.module:function``, a function returning ``(train, val)``
(needs ``--allow-import package``)."""


class DataSpec(_Strict):
    """Where the samples come from and how they are batched."""

    source: DataSource = Field(
        description="{npz: file}, {pt: file}, {synthetic: N}, {csv: file, ...}, "
        "{parquet: file, ...}, {images: folder, ...}, {function: name, args: ...}, "
        "'synthetic', or 'package.module:function' returning (train, val) datasets."
    )
    batch_size: PositiveInt = Field(32, description="Samples per batch.")
    val_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = (
        Field(
            None,
            description="Hold out this fraction of the source for validation "
            "(a seeded random split). Default: no validation unless val is given.",
        )
    )
    val: DataSource | None = Field(
        None, description="A separate validation source, instead of val_fraction."
    )
    test_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = (
        Field(
            None,
            description="Hold out this fraction of the source for testing (seeded, "
            "apart from validation); training never sees it.",
        )
    )
    test: DataSource | None = Field(
        None, description="A separate test source, instead of test_fraction."
    )
    shuffle: bool = Field(
        True, description="Shuffle the training samples each epoch (seeded)."
    )
    workers: Annotated[int, Field(ge=0, le=MAX_WORKERS)] = Field(
        0,
        description="Loader worker processes, for datasets (images, functions); "
        "in-memory arrays need none.",
    )


class LossTerm(_WithArguments):
    """One term of the loss: a loss class between an output and a target.

    Keys other than the ones below are the loss class's arguments
    (``label_smoothing: 0.1``); ``args:`` holds them too, and is the place for the
    class's own ``weight`` and for tensors (lists of numbers become tensors).
    """

    # Without inputs, target is required (checked with the rest of the spec).
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "if": {"not": {"required": ["inputs"]}},
            "then": {"required": ["target"]},
        },
    )

    op: str = Field(
        description="A torch.nn loss class (CrossEntropyLoss, MSELoss, "
        "BCEWithLogitsLoss, ...) or package.module:Class, an nn.Module whose "
        "package is allowed (--allow-import package)."
    )
    target: str | None = Field(
        None,
        min_length=1,
        description="The data array the output is compared with (or give inputs).",
    )
    weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        1.0, description="The term's weight in the summed loss (0 or more)."
    )
    args: dict[str, Any] | None = Field(
        None,
        description="The loss class's own arguments; a list of numbers is passed "
        "as a float tensor on the run's device: {weight: [1.0, 3.0]}, "
        "{pos_weight: [5.0]}.",
    )
    inputs: dict[str, Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        description="The loss's forward arguments by name, each an output of the "
        "model or a data array: {input: mean, target: y, var: var}. Default: "
        "(the output, target).",
    )


class MetricTerm(_WithArguments):
    """A metric with arguments; other keys are the metric's arguments (task,
    num_classes, average, ...)."""

    op: str = Field(
        description="A metric name (accuracy, f1, iou, ...) or package.module:Name, "
        "a torchmetrics.Metric class or a function (output, target) -> the batch's "
        "mean, from an allowed package."
    )
    name: str | None = Field(
        None,
        min_length=1,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The name it is logged as (val_<name>); default: the metric's.",
    )
    higher_is_better: bool | None = Field(
        None,
        description="For a custom metric: whether higher values are better (for "
        "monitor); default: the metric's own higher_is_better, else false.",
    )


class ParamGroupSpec(_WithArguments):
    """Parameters whose names match a glob, with their own optimizer arguments."""

    match: str = Field(
        description="A glob over parameter names (backbone.*, head.weight); a "
        "parameter joins the first group that matches it, else the default group."
    )


class OptimizerSpec(_WithArguments):
    """A torch.optim class; other keys are its arguments (lr, weight_decay, ...)."""

    op: str = Field(description="A torch.optim class: AdamW, SGD, Adam, ...")
    param_groups: list[ParamGroupSpec] | None = Field(
        None,
        description="Groups of parameters with their own arguments, e.g. "
        "[{match: 'backbone.*', lr: 1e-4}].",
    )


class UnfreezeSpec(_Strict):
    """Frozen parameters that start training at the start of an epoch."""

    at_epoch: PositiveInt = Field(description="The epoch (1-based) they start at.")
    match: str = Field(description="A glob over parameter names (backbone.layer4.*).")


class SchedulerSpec(_WithArguments):
    """A torch.optim.lr_scheduler class; other keys are its arguments.

    OneCycleLR's ``total_steps`` and CosineAnnealingLR's ``T_max``, when not given,
    are the planned length of the run (or of the phase) in ``interval`` units.
    """

    op: str = Field(
        description="A torch.optim.lr_scheduler class: OneCycleLR, "
        "CosineAnnealingLR, StepLR, ReduceLROnPlateau, LinearLR, LambdaLR, "
        "SequentialLR, ChainedScheduler, ..."
    )
    interval: Literal["step", "epoch"] = Field(
        "epoch", description="Step the scheduler after each optimizer step or epoch."
    )
    steps: PositiveInt | None = Field(
        None,
        description="In a chain (a list, or SequentialLR's schedulers): how many "
        "scheduler steps this phase lasts before the next one starts.",
    )
    schedulers: list[SchedulerSpec] | None = Field(
        None,
        description="The parts of a SequentialLR (one after another) or a "
        "ChainedScheduler (all at once).",
    )


class EarlyStopSpec(_Strict):
    """Stop when the monitored validation value stops improving."""

    patience: PositiveInt = Field(
        description="Validations in a row without an improvement before the run stops."
    )
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        0.0,
        description="An improvement is a change of the monitored value by more "
        "than this, in its better direction.",
    )


class CheckpointsSpec(_Strict):
    """Which checkpoints a run keeps besides last.pt and best.pt."""

    keep_best: PositiveInt = Field(
        1,
        description="Keep the k best checkpoints by the monitored value "
        "(best-step<N>.pt for each of them when k > 1; best.pt is the best one).",
    )
    every_epoch: bool = Field(
        False, description="Keep a checkpoint of each epoch's end: epoch-<N>.pt."
    )
    keep_last: PositiveInt | None = Field(
        None,
        description="With every_epoch: keep only the newest n epoch checkpoints. "
        "Default: all of them.",
    )


class LogSpec(_Strict):
    """What a run logs beyond the loss, learning rate and validation values."""

    csv: bool = Field(True, description="Also write metrics.csv (one row a record).")
    grad_norm: bool = Field(
        False,
        description="Log the total gradient norm of the logged step (train/grad_norm).",
    )
    graph: bool = Field(
        False, description="Add the model's graph to TensorBoard (a trace of it)."
    )
    hparams: bool = Field(
        True,
        description="Write the params and train settings to TensorBoard's HParams "
        "tab, with the best monitored value.",
    )


class CompileSpec(_Strict):
    """Options of ``torch.compile``."""

    mode: (
        Literal[
            "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
        ]
        | None
    ) = Field(None, description="The compile mode (inductor).")
    fullgraph: bool = Field(
        False, description="Fail rather than split the model into several graphs."
    )
    backend: str = Field("inductor", description="A torch._dynamo backend name.")
    dynamic: bool | None = Field(
        None,
        description="Compile for dynamic shapes; null lets torch decide. Batches "
        "keep one shape (see the docs), so this is rarely needed.",
    )
    check: bool = Field(
        True,
        description="Before training, run the first step eagerly too and stop if "
        "the compiled step's loss or a gradient differs (one extra eager step).",
    )


def _default_optimizer() -> OptimizerSpec:
    return OptimizerSpec.model_validate({"op": "AdamW", "lr": 0.001})


class TrainSpec(_Strict):
    """The ``train:`` section: data, losses, optimisation and run settings."""

    data: DataSpec = Field(description="Training (and validation) data.")
    loss: dict[str, LossTerm] = Field(
        min_length=1,
        description="Output name -> loss term; the loss is their weighted sum.",
    )
    metrics: dict[str, list[str | MetricTerm]] = Field(
        default_factory=dict,
        description="Output name -> metrics computed on validation: names "
        "(accuracy, top5_accuracy, binary_accuracy, mse, mae, f1, precision, "
        "recall, iou, dice, auroc, r2, perplexity) or {op: name, ...arguments}.",
    )
    optimizer: OptimizerSpec = Field(
        default_factory=_default_optimizer,
        description="Default: {op: AdamW, lr: 0.001}.",
    )
    scheduler: SchedulerSpec | list[SchedulerSpec] | None = Field(
        None,
        description="Learning-rate schedule; a list is a chain of phases (each but "
        "the last with steps:). Default: constant.",
    )
    epochs: PositiveInt | None = Field(
        None,
        description="Passes over the training data; with steps, whichever ends "
        "first. Neither: one epoch.",
    )
    steps: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None = Field(
        None,
        description="Optimizer steps; with epochs, whichever ends first. 0: build, "
        "validate once and write the checkpoint, without training.",
    )
    precision: Precision = Field(
        "32-true",
        description="32-true, bf16-mixed (autocast to bfloat16), or 16-mixed "
        "(float16 autocast with a gradient scaler; CUDA only).",
    )
    compile: bool | CompileSpec = Field(
        False, description="Compile the model with torch.compile: true, or options."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    strategy: Strategy = Field(
        "ddp",
        description="How several processes (torchrun, nnspec train --nproc) share "
        "the work: ddp (a replica of the model per process, gradients averaged) or "
        "fsdp (parameters, gradients and optimizer state sharded across processes). "
        "One process ignores it.",
    )
    grad_clip: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        None, description="Clip the gradients' total norm to this value."
    )
    accumulate: PositiveInt = Field(
        1, description="Batches whose gradients are summed into one optimizer step."
    )
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = Field(
        0,
        description="Seeds initial weights, the split, shuffling, dropout and the "
        "data workers (0 to 2**32 - 1).",
    )
    log_every: PositiveInt = Field(
        50, description="Log the loss every this many steps (a host sync)."
    )
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="Also checkpoint every this many steps (a checkpoint is "
        "always written at each epoch end and when training stops).",
    )
    val_every: PositiveInt | None = Field(
        None, description="Also validate every this many steps (always at epoch end)."
    )
    monitor: str = Field(
        "val_loss",
        description="The validation value that picks the best checkpoint: "
        "val_loss or val_<metric>.",
    )
    unfreeze: list[UnfreezeSpec] = Field(
        default_factory=list,
        description="Frozen parameters that start training at a later epoch.",
    )
    early_stop: EarlyStopSpec | None = Field(
        None,
        description="Stop when the monitor has not improved for patience "
        "validations: {patience: 3, min_delta: 0.001}.",
    )
    checkpoints: CheckpointsSpec = Field(
        default_factory=lambda: CheckpointsSpec.model_validate({}),
        description="Checkpoints kept besides last.pt and best.pt.",
    )
    log: LogSpec = Field(
        default_factory=lambda: LogSpec.model_validate({}),
        description="What else a run logs.",
    )
    frozen_bn: Literal["train", "eval"] = Field(
        "train",
        description="eval: a BatchNorm whose parameters are all frozen stays in "
        "eval mode while training (its running statistics do not change).",
    )
