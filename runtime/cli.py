"""``nnspec train SPEC [--out DIR] [--resume] [--set KEY=VALUE ...] [-p NAME=VALUE ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from nnspec.cli import UsageError, add_spec_arguments, parse_params

from ..spec.yaml_source import parse_value
from .errors import TrainError

__all__ = [
    "export_weights_command",
    "parse_overrides",
    "register_export_weights",
    "register_train",
    "train_command",
]

EXIT_TRAIN_ERROR = 1
EXIT_INTERRUPTED = 130


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["optimizer.lr=0.01", "epochs=2"]`` -> ``{"optimizer.lr": 0.01, "epochs": 2}``;
    values are read as YAML, as in a spec (``1e-3`` is a number,
    ``compile={mode: max-autotune}`` a mapping)."""
    overrides: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, received {item!r}")
        if key.startswith("train."):
            key = key[len("train.") :]
        try:
            overrides[key] = parse_value(text) if text.strip() else ""
        except yaml.YAMLError:
            overrides[key] = text
    return overrides


def train_command(args: argparse.Namespace) -> int:
    from .loop import Trainer

    trainer = Trainer(
        args.spec,
        args.out,
        overrides=parse_overrides(args.set),
        params=parse_params(args.params),
        allow_imports=args.allow_imports,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    try:
        result = trainer.fit()
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TRAIN_ERROR
    return EXIT_INTERRUPTED if result.status == "interrupted" else 0


def register_train(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<spec stem>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run's last checkpoint (with the spec and --set given "
        "now; the model must be unchanged)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a run directory that holds a run",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a key of the train section (repeatable): --set epochs=2, "
        "--set optimizer.lr=0.01; the value is read as YAML",
    )
    parser.set_defaults(handler=train_command)


def export_weights_command(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .rundir import RunDir
    from .weights import save_weights

    run = RunDir(Path(args.run_dir))
    source = run.best if args.checkpoint == "best" else run.last
    if not source.exists():
        raise UsageError(
            f"{args.run_dir} has no {args.checkpoint} checkpoint ({source})"
        )
    try:
        state = load_checkpoint(source)
    except TrainError as exc:
        raise UsageError(str(exc)) from None
    target = (
        Path(args.output) if args.output else Path(args.run_dir) / "model.safetensors"
    )
    save_weights(state["model"], target)
    print(
        f"wrote {target} ({len(state['model'])} tensors, step {state.get('step', '?')})"
    )
    return 0


def register_export_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory of nnspec train"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write (.safetensors, or .pt for a torch file; "
        "default: RUN_DIR/model.safetensors)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="best",
        help="which checkpoint's weights (default: best)",
    )
    parser.set_defaults(handler=export_weights_command)
