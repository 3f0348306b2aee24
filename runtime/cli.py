"""``nnspec train SPEC [--out DIR] [--resume] [--set KEY=VALUE ...] [-p NAME=VALUE ...]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from nnspec.cli import UsageError, add_spec_arguments, parse_params

from ..spec.yaml_source import parse_value
from .errors import TrainError

__all__ = ["parse_overrides", "register_train", "train_command"]

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
