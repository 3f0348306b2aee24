"""Command line: ``compile-model`` and the umbrella ``nnspec`` command.

Every command reports spec mistakes as ``path:line:col: error: message`` lines (with
the source line and a caret beneath) on standard error and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands import (
    EXIT_INTERNAL_ERROR,
    EXIT_SPEC_ERROR,
    STDIN,
    UsageError,
    add_spec_arguments,
    add_version,
    default_output,
    importable_beside,
    load_spec,
    parse_params,
    run_command,
    spec_file,
)

# The shared command pieces live in nnspec.commands; these names stay importable
# from here too.
__all__ = [
    "EXIT_INTERNAL_ERROR",
    "EXIT_SPEC_ERROR",
    "STDIN",
    "UsageError",
    "add_spec_arguments",
    "compile_main",
    "importable_beside",
    "load_spec",
    "main",
    "parse_params",
    "run_command",
]

# Subcommands of `nnspec`: name -> "module:function" registering it on a parser.
# Each register function adds its arguments and sets `handler` (args -> exit status).
SUBCOMMANDS: dict[str, str] = {
    "compile": "nnspec.cli:register_compile",
    "summary": "nnspec.views:register_summary",
    "graph": "nnspec.views:register_graph",
    "profile": "nnspec.views:register_profile",
    "train": "nnspec.train_cli:register_train",
    "export-weights": "nnspec.train_cli:register_export_weights",
    "consolidate": "nnspec.train_cli:register_consolidate",
    "evaluate": "nnspec.run_cli:register_evaluate",
    "predict": "nnspec.run_cli:register_predict",
    "export": "nnspec.export:register_export",
    "schema": "nnspec.scaffold:register_schema",
    "init": "nnspec.scaffold:register_init",
    "zoo": "nnspec.zoo_cli:register_zoo",
}

# One line each: the subcommand's entry in `nnspec --help` and its own description.
HELPS: dict[str, str] = {
    "compile": "compile a spec to PyTorch source (same as compile-model)",
    "summary": "a table of the nodes: shapes, parameters, FLOPs, memory",
    "graph": "draw the model (.svg, .png, .pdf, .dot, .mmd)",
    "profile": "profile training steps with torch.profiler",
    "train": "train the model as the spec's train: section says",
    "export-weights": "write a run's trained weights to a .safetensors file",
    "consolidate": "turn a sharded (FSDP) checkpoint into one .pt file",
    "evaluate": "the loss and metrics of a run's checkpoint on its data",
    "predict": "a run's model over a file of inputs, to a file of outputs",
    "export": "export the model to ONNX or a torch.export program (.pt2)",
    "schema": "print or write the JSON Schema of specs, for editors",
    "init": "write a starter spec whose modeline points at the schema",
    "zoo": "list the model zoo's specs (load them as zoo:NAME)",
}


def check_output_path(target: Path, spec: Path, imports: Sequence[str]) -> None:
    """Refuse an output that is the spec itself (also through a link), or whose module
    name shadows a module the generated code imports (torch, an allowed custom
    package) or one of Python's standard library, for every model in that folder."""
    same = target.resolve() == spec.resolve() or (
        target.exists() and spec.exists() and os.path.samefile(target, spec)
    )
    if same:
        raise UsageError(f"the output {target} would overwrite the spec {spec}")
    if target.suffix != ".py":
        return
    name = target.stem.lower()
    imported = {"torch", *(package.split(".")[0].lower() for package in imports)}
    if name in imported:
        why = f"the module {target.stem!r} that the generated code imports"
    elif name in {n.lower() for n in sys.stdlib_module_names}:
        why = f"the standard library module {target.stem!r}"
    else:
        return
    raise UsageError(
        f"the output {target} would shadow {why} for every Python file in its "
        f"folder; choose another name, e.g. -o {target.with_name(target.stem + '_model.py')}"
    )


def compile_command(args: argparse.Namespace) -> int:
    target = None
    if args.output != "-" and not (args.output is None and args.spec == STDIN):
        target = Path(args.output) if args.output else default_output(args.spec, ".py")
        check_output_path(target, spec_file(args.spec), args.allow_imports)
    spec = load_spec(args)
    source = spec.source(comments=not args.no_comments)
    if target is None:
        sys.stdout.write(source)
        return 0
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
    for key, value in spec.named_outputs():
        lines.append(f"  output {key}: {value.render()}")
    lines.append(f"wrote {target}")
    return "\n".join(lines)


def register_compile(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write the Python source (default: SPEC with .py, or standard "
        "output when SPEC is '-'; '-' for standard output)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print no summary")
    parser.add_argument(
        "--no-comments",
        action="store_true",
        help="leave out the comments that give each statement's spec line and shape",
    )
    parser.set_defaults(handler=compile_command)


def compile_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``compile-model``."""
    parser = argparse.ArgumentParser(
        prog="compile-model",
        description="Compile an nnspec YAML spec to PyTorch source.",
    )
    add_version(parser)
    register_compile(parser)
    args = parser.parse_args(argv)
    return run_command(args.handler, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nnspec``."""
    parser = argparse.ArgumentParser(
        prog="nnspec", description="Declarative model specs for PyTorch."
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, target in SUBCOMMANDS.items():
        module_name, _, function = target.partition(":")
        register = getattr(importlib.import_module(module_name), function)
        text = HELPS[name]
        command = sub.add_parser(name, help=text, description=f"nnspec {name}: {text}.")
        add_version(command)
        register(command)
    args = parser.parse_args(argv)
    return run_command(args.handler, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
