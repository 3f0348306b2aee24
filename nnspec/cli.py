"""Command line: ``compile-model`` and the umbrella ``nnspec`` command.

Every command reports spec mistakes as ``path:line:col: error: message`` lines (with
the source line and a caret beneath) on standard error and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .spec import SpecError
from .spec.yaml_source import parse_value

__all__ = ["add_spec_arguments", "compile_main", "main", "parse_params", "run_command"]

EXIT_SPEC_ERROR = 2

# Subcommands of `nnspec`: name -> "module:function" registering it on a parser.
# Each register function adds its arguments and sets `handler` (args -> exit status).
SUBCOMMANDS: dict[str, str] = {
    "compile": "nnspec.cli:register_compile",
    "summary": "nnspec.views:register_summary",
    "graph": "nnspec.views:register_graph",
    "profile": "nnspec.views:register_profile",
    "train": "nnspec.runtime.cli:register_train",
    "export-weights": "nnspec.runtime.cli:register_export_weights",
    "consolidate": "nnspec.runtime.cli:register_consolidate",
}


class UsageError(Exception):
    """A bad command-line argument (not a spec mistake)."""


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``["classes=10", "act=relu"]`` -> ``{"classes": 10, "act": "relu"}``; values read as YAML."""
    params: dict[str, Any] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"-p expects name=value, received {item!r}")
        try:
            value = parse_value(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, dict):
            raise UsageError(
                f"-p {name}: a param value is a number, string, bool or list"
            )
        params[name.strip()] = value
    return params


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """SPEC, -p and --allow-import, shared by every command that reads a spec."""
    parser.add_argument("spec", metavar="SPEC", help="the YAML spec file")
    parser.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        metavar="NAME=VALUE",
        help="override a param of the spec (repeatable); the value is read as YAML",
    )
    parser.add_argument(
        "--allow-import",
        dest="allow_imports",
        action="append",
        default=[],
        metavar="PKG",
        help="allow custom ops (pkg.module:Class) from this package (repeatable)",
    )
    parser.add_argument(
        "--confine",
        action="store_true",
        help="read only files inside the spec's folder (its extends: bases and "
        "weights:, symbolic links followed)",
    )


def compile_command(args: argparse.Namespace) -> int:
    from .api import load

    spec = load(args.spec, parse_params(args.params), allow_imports=args.allow_imports)
    source = spec.source()
    if args.output == "-":
        sys.stdout.write(source)
        return 0
    target = Path(args.output) if args.output else Path(args.spec).with_suffix(".py")
    if target.resolve() == Path(args.spec).resolve():
        raise UsageError(f"the output {target} would overwrite the spec")
    try:
        target.write_text(source, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not args.quiet:
        print(summary_text(spec, target))
    return 0


def summary_text(spec: Any, target: Path) -> str:
    """A one-screen summary of a compiled spec: nodes, parameters, input and output shapes."""
    compiled = spec.compiled
    model = compiled.model
    meta = spec.build(device="meta")
    total = sum(p.numel() for p in meta.parameters())
    trainable = sum(p.numel() for p in meta.parameters() if p.requires_grad)
    lines = [
        f"{model.name}: {len(compiled.result.calls)} nodes, "
        f"{len(compiled.blocks)} block class{'' if len(compiled.blocks) == 1 else 'es'}, "
        f"{total:,} parameters"
        + (f" ({trainable:,} trainable)" if trainable != total else ""),
    ]
    for name, value in zip(model.inputs, model.input_values):
        lines.append(f"  input  {name}: {value.render()}")
    out = compiled.result.output_value
    if isinstance(out, dict):
        named = list(out.items())
    elif model.outputs.kind == "tuple":
        named = [(str(r), v) for r, v in zip(model.outputs.refs, out.items)]
    else:
        named = [(str(model.outputs.refs[0]), out)]
    for key, value in named:
        lines.append(f"  output {key}: {value.render()}")
    lines.append(f"wrote {target}")
    return "\n".join(lines)


def register_compile(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write the Python source (default: SPEC with .py; '-' for stdout)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print no summary")
    parser.set_defaults(handler=compile_command)


def run_command(
    handler: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Run a command, turning spec mistakes into exit status 2 and no traceback."""
    from .api import confined

    root = None
    if getattr(args, "confine", False):
        root = str(Path(args.spec).absolute().parent)
    try:
        with confined(root):
            return handler(args)
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def compile_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``compile-model``."""
    parser = argparse.ArgumentParser(
        prog="compile-model",
        description="Compile an nnspec YAML spec to PyTorch source.",
    )
    register_compile(parser)
    args = parser.parse_args(argv)
    return run_command(args.handler, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nnspec``."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nnspec", description="Declarative model specs for PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    helps = {
        "compile": "compile a spec to PyTorch source (same as compile-model)",
        "summary": "a table of the nodes: shapes, parameters, FLOPs, memory",
        "graph": "draw the model (.svg, .png, .pdf, .dot, .mmd)",
        "profile": "profile training steps with torch.profiler",
        "train": "train the model as the spec's train: section says",
        "export-weights": "write a run's trained weights to a .safetensors file",
        "consolidate": "turn a sharded (FSDP) checkpoint into one .pt file",
    }
    for name, target in SUBCOMMANDS.items():
        module_name, _, function = target.partition(":")
        register = getattr(importlib.import_module(module_name), function)
        register(sub.add_parser(name, help=helps.get(name)))
    args = parser.parse_args(argv)
    return run_command(args.handler, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
