"""The commands that show a model: ``nnspec summary``, ``nnspec graph``, ``nnspec profile``."""

from __future__ import annotations

import argparse
import json

import torch

from .cli import add_spec_arguments, parse_params

__all__ = ["register_summary"]

_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _load(args: argparse.Namespace) -> object:
    from .api import load

    return load(args.spec, parse_params(args.params), allow_imports=args.allow_imports)


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, received {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("the depth is 0 or more")
    return value


def _add_dtype(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=sorted(_DTYPES),
        help="build the parameters in this dtype (default: as the model builds them)",
    )


# -- summary -------------------------------------------------------------------------


def summary_command(args: argparse.Namespace) -> int:
    spec = _load(args)
    summary = spec.summary(dtype=_DTYPES.get(args.dtype))  # type: ignore[attr-defined]
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.render(depth=args.depth))
    return 0


def register_summary(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON, for machines")
    parser.add_argument(
        "--depth",
        type=_depth,
        metavar="N",
        help="open blocks N levels deep in the table (default: all)",
    )
    _add_dtype(parser)
    parser.set_defaults(handler=summary_command)
