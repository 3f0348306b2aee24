"""``nnspec evaluate`` and ``nnspec predict``: a trained run's checkpoint on data.

The work is the runtime's (nnspec.runtime.evaluate and nnspec.runtime.predict); this
module holds their arguments and what they print.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from .commands import UsageError, at_least_one
from .runtime.evaluate import (
    evaluate,
    file_samples,
    load_run,
    split_samples,
)
from .runtime.predict import SUFFIXES, predict, read_inputs, write_outputs

__all__ = ["register_evaluate", "register_predict"]


def evaluate_command(args: argparse.Namespace) -> int:
    allowed = frozenset(args.allow_imports)
    run_dir = Path(args.run_dir)
    run = load_run(run_dir, args.checkpoint, allowed)
    if args.data is not None:
        samples = file_samples(run.settings, Path(args.data))
        split = str(args.data)
    else:
        samples = split_samples(run, args.split, allowed)
        split = args.split
    record = evaluate(run, samples, args.batch_size)
    if args.json:
        report: dict[str, Any] = {
            "run": str(run_dir),
            "checkpoint": run.checkpoint,
            "step": run.step,
            "data": split,
            "samples": len(samples),
            "metrics": {
                k: (v if math.isfinite(v) else str(v)) for k, v in record.items()
            },
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{run_dir}: {run.checkpoint} checkpoint (step {run.step}), {split}, "
        f"{len(samples):,} samples"
    )
    width = max(len(k) for k in record)
    for key, value in record.items():
        print(f"  {key:<{width}}  {value:.6g}")
    return 0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR, --checkpoint, --batch-size and --allow-import (evaluate, predict)."""
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory of nnspec train"
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint's weights (default: best)",
    )
    parser.add_argument(
        "--batch-size",
        type=at_least_one("a whole number >= 1"),
        metavar="N",
        help="samples per batch (default: the run's batch_size)",
    )
    parser.add_argument(
        "--allow-import",
        dest="allow_imports",
        action="append",
        default=[],
        metavar="PKG",
        help="allow the custom ops, losses, metrics and data functions of the run "
        "from this package (repeatable)",
    )


def register_evaluate(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="evaluate on this .npz or .pt file (the run's input and target names) "
        "instead of a split of the run's data",
    )
    parser.add_argument(
        "--split",
        choices=("val", "test"),
        default="val",
        help="the run's validation split (default) or its test data (data.test)",
    )
    parser.add_argument("--json", action="store_true", help="print the values as JSON")
    parser.set_defaults(handler=evaluate_command)


def predict_command(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if target.suffix not in SUFFIXES:
        raise UsageError(f"-o {target}: predictions are written to an .npz or .pt file")
    if target.exists() or target.is_symlink():
        if source.exists() and os.path.samefile(source, target):
            raise UsageError(f"-o {target} is the input file")
        if not args.overwrite:
            raise UsageError(f"{target} exists; give --overwrite to replace it")
        if not target.is_file():
            raise UsageError(f"{target} is not a regular file")
    if not target.parent.is_dir():
        raise UsageError(f"-o {target}: no such folder {target.parent}")
    run = load_run(Path(args.run_dir), args.checkpoint, frozenset(args.allow_imports))
    inputs = read_inputs(run, source)
    outputs = predict(run, inputs, args.batch_size)
    try:
        write_outputs(outputs, target)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    n = len(next(iter(inputs.values())))
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
    print(
        f"wrote {target}: {n:,} samples ({shapes}), {run.checkpoint} checkpoint (step {run.step})"
    )
    return 0


def register_predict(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument(
        "input", metavar="INPUT", help="an .npz or .pt file of the model's inputs"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to write the outputs (.npz or .pt)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it exists"
    )
    parser.set_defaults(handler=predict_command)
