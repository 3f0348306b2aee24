"""Command line: ``compile-model`` and the umbrella ``nnspec`` command.

Every command reports spec mistakes as ``path:line:col: error: message`` lines (with
the source line and a caret beneath) on standard error and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .compiler.pyformat import GeneratedSourceError
from .spec import SpecError
from .spec.yaml_source import parse_value

__all__ = [
    "add_spec_arguments",
    "compile_main",
    "importable_beside",
    "load_spec",
    "main",
    "parse_params",
    "run_command",
]

EXIT_SPEC_ERROR = 2
EXIT_INTERNAL_ERROR = 1

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
    "evaluate": "nnspec.runtime.evaluate:register_evaluate",
    "predict": "nnspec.runtime.predict:register_predict",
    "export": "nnspec.export:register_export",
    "schema": "nnspec.scaffold:register_schema",
    "init": "nnspec.scaffold:register_init",
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
}

#: The SPEC argument that reads the spec from standard input.
STDIN = "-"


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
    parser.add_argument(
        "spec", metavar="SPEC", help="the YAML spec file ('-' reads standard input)"
    )
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


def importable_beside(spec: str) -> None:
    """Let allowed imports (``--allow-import``) find a module beside the spec, as
    ``python -m`` lets them find one in the working directory. The folder goes last
    on the path: it never hides an installed module or the standard library."""
    folder = os.path.abspath(os.path.dirname(spec) or ".")
    if folder not in (os.path.abspath(p or ".") for p in sys.path):
        sys.path.append(folder)


def load_spec(args: argparse.Namespace) -> Any:
    """The spec a command names: a file, or standard input for ``-`` (its errors then
    say ``<stdin>:line:col``; relative paths in it are read from the working folder)."""
    from .api import load, loads

    params = parse_params(args.params)
    if args.spec != STDIN:
        if args.allow_imports:
            importable_beside(args.spec)
        return load(args.spec, params, allow_imports=args.allow_imports)
    from .spec.yaml_source import MAX_DOCUMENT_BYTES

    data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UsageError(
            f"<stdin>: the spec is over the {MAX_DOCUMENT_BYTES:,}-byte document limit"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"<stdin>: not UTF-8 text (byte {exc.start})") from None
    return loads(text, params, path="<stdin>", allow_imports=args.allow_imports)


def compile_command(args: argparse.Namespace) -> int:
    target = None
    if args.output != "-" and not (args.output is None and args.spec == STDIN):
        target = (
            Path(args.output) if args.output else Path(args.spec).with_suffix(".py")
        )
        check_output_path(target, Path(args.spec), args.allow_imports)
    spec = load_spec(args)
    source = spec.source()
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
        help="where to write the Python source (default: SPEC with .py, or standard "
        "output when SPEC is '-'; '-' for standard output)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print no summary")
    parser.set_defaults(handler=compile_command)


def _add_version(parser: argparse.ArgumentParser) -> None:
    from . import __version__

    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")


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
    except GeneratedSourceError as exc:
        print(
            f"error: internal error: {exc}; this is a bug in nnspec, not a mistake in "
            "the spec (nothing was written)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def compile_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``compile-model``."""
    parser = argparse.ArgumentParser(
        prog="compile-model",
        description="Compile an nnspec YAML spec to PyTorch source.",
    )
    _add_version(parser)
    register_compile(parser)
    args = parser.parse_args(argv)
    return run_command(args.handler, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nnspec``."""
    parser = argparse.ArgumentParser(
        prog="nnspec", description="Declarative model specs for PyTorch."
    )
    _add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, target in SUBCOMMANDS.items():
        module_name, _, function = target.partition(":")
        register = getattr(importlib.import_module(module_name), function)
        text = HELPS[name]
        command = sub.add_parser(name, help=text, description=f"nnspec {name}: {text}.")
        _add_version(command)
        register(command)
    args = parser.parse_args(argv)
    return run_command(args.handler, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
