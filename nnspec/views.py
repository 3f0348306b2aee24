"""The commands that show a model: ``nnspec summary``, ``nnspec graph``, ``nnspec profile``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .commands import STDIN, UsageError, add_spec_arguments, default_output, load_spec

if TYPE_CHECKING:
    from .api import Spec

__all__ = ["register_graph", "register_profile", "register_summary"]

_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _load(args: argparse.Namespace) -> Spec:
    spec: Spec = load_spec(args)
    return spec


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


def _positive(text: str) -> int:
    value = _depth(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected 1 or more")
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
    summary = spec.summary(dtype=_DTYPES.get(args.dtype))
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


# -- graph ---------------------------------------------------------------------------


def graph_command(args: argparse.Namespace) -> int:
    from .inspection.graph_render import (
        GraphvizError,
        build_diagram,
        render_graph,
        to_dot,
        to_mermaid,
    )

    _TEXT_FORMATS = ("dot", "mmd")

    spec = _load(args)
    if args.output == "-":
        fmt = args.format or "dot"
        if fmt not in _TEXT_FORMATS:
            raise UsageError(
                f"-o - writes a text format ({', '.join(_TEXT_FORMATS)}), not {fmt}"
            )
        diagram = build_diagram(spec.summary(), depth=args.depth)
        try:
            text = (
                to_dot(diagram, args.rankdir, args.dpi)
                if fmt == "dot"
                else to_mermaid(diagram, args.rankdir)
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        sys.stdout.write(text)
        return 0
    if args.output is None and args.spec == STDIN:
        raise UsageError("with SPEC '-', name the picture: -o FILE (or -o - for text)")
    target = Path(args.output) if args.output else default_output(args.spec, ".svg")
    if args.format and target.suffix.lower() != f".{args.format}":
        raise UsageError(f"--format {args.format} does not match {target.name}")
    try:
        render_graph(
            spec.summary(), target, depth=args.depth, rankdir=args.rankdir, dpi=args.dpi
        )
    except (GraphvizError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {target}")
    return 0


def register_graph(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the picture: .svg, .png or .pdf (drawn by Graphviz), .dot, or .mmd "
        "(Mermaid); '-' writes DOT or Mermaid text to standard output; "
        "default: SPEC with .svg",
    )
    parser.add_argument(
        "--format",
        choices=["svg", "png", "pdf", "dot", "mmd"],
        help="the format, for -o - (dot or mmd; default dot); with a file, its suffix",
    )
    parser.add_argument(
        "--depth",
        type=_depth,
        default=1,
        metavar="N",
        help="open blocks as clusters N levels deep (default: 1; 0 keeps them boxes)",
    )
    parser.add_argument(
        "--rankdir",
        choices=["TB", "LR", "BT", "RL"],
        default="TB",
        help="the direction the graph flows in (default: TB, top to bottom)",
    )
    parser.add_argument(
        "--dpi",
        type=_positive,
        metavar="N",
        help="the resolution of a .png, in dots per inch (Graphviz's default: 96)",
    )
    parser.set_defaults(handler=graph_command)


# -- profile -------------------------------------------------------------------------


def profile_command(args: argparse.Namespace) -> int:
    from .inspection.profile import profile_spec

    spec = _load(args)
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available here")
    try:
        report = profile_spec(
            spec,
            steps=args.steps,
            out_dir=args.out,
            batch_size=args.batch_size,
            device=args.device,
            dtype=_DTYPES.get(args.dtype),
            top=args.top,
            peak=args.peak_tflops,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(report.render())
    return 0


def register_profile(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "--steps",
        type=_positive,
        default=5,
        metavar="N",
        help="profiled steps, after 1 waiting and 1 warm-up step (default: 5)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where the trace goes (default: runs/profile/<model name>)",
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=8, metavar="B", help="default: 8"
    )
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)"
    )
    _add_dtype(parser)
    parser.add_argument(
        "--top", type=_positive, default=10, metavar="N", help="operators to list"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        metavar="X",
        help="the device's peak TFLOP/s, for the MFU of a GPU the table does not know",
    )
    parser.set_defaults(handler=profile_command)
