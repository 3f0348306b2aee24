"""What every ``nnspec`` command shares: the spec arguments, reading the spec, the
usage error and the exit statuses, and running a command so that a mistake in the
spec or the arguments ends in a message and status 2, never a traceback.

The command modules (``nnspec.cli``, ``nnspec.train_cli``, ...) import this one; it
imports none of them.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from .api import Spec, confined, load, loads
from .compiler.loaded import importable_beside
from .compiler.pyformat import GeneratedSourceError
from .compiler.shape_rules import ShapeRuleBug
from .runtime.errors import RunError
from .spec.errors import SpecError
from .spec.files import ZOO_PREFIX, is_zoo
from .spec.version import __version__
from .spec.yaml_source import MAX_DOCUMENT_BYTES, parse_value

__all__ = [
    "EXIT_INTERNAL_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_SPEC_ERROR",
    "STDIN",
    "UsageError",
    "add_spec_arguments",
    "add_version",
    "at_least_one",
    "default_output",
    "importable_beside",
    "load_spec",
    "parse_assignments",
    "parse_overrides",
    "parse_params",
    "run_command",
    "spec_file",
]

EXIT_SPEC_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130

#: The SPEC argument that reads the spec from standard input.
STDIN = "-"


class UsageError(Exception):
    """A bad command-line argument (not a spec mistake)."""


def parse_assignments(
    items: Iterable[str] | None,
    *,
    flag: str,
    metavar: str,
    mappings: bool,
    prefix: str = "",
) -> dict[str, Any]:
    """The ``NAME=VALUE`` items of a repeatable ``flag`` as a dict, each value read as
    YAML the way a spec reads it (``1e-3`` is a number, ``[1, 2]`` a list; text that
    is not YAML stays text). ``prefix`` is dropped from a name that starts with it;
    ``mappings=False`` refuses a mapping as a value."""
    values: dict[str, Any] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{flag} expects {metavar}, received {item!r}")
        name = name.removeprefix(prefix) if prefix else name
        try:
            value = parse_value(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, dict) and not mappings:
            raise UsageError(
                f"{flag} {name}: a param value is a number, string, bool or list"
            )
        values[name] = value
    return values


#: ``-p classes=10 -p act=relu``: params of the spec, never mappings.
parse_params = functools.partial(
    parse_assignments, flag="-p", metavar="NAME=VALUE", mappings=False
)
#: ``--set optimizer.lr=0.01 --set compile={mode: max-autotune}``: keys of the train
#: section (``train.epochs`` is ``epochs``).
parse_overrides = functools.partial(
    parse_assignments, flag="--set", metavar="KEY=VALUE", mappings=True, prefix="train."
)


def spec_file(spec: str) -> Path:
    """The file a SPEC argument reads: the zoo's file for ``zoo:NAME`` (a name the zoo
    lacks gives a path that does not exist), else the path as given."""
    if is_zoo(spec):
        from .zoo import path

        found = path(spec[len(ZOO_PREFIX) :])
        return found if found is not None else Path(spec)
    return Path(spec)


def default_output(spec: str, suffix: str) -> Path:
    """Where a command writes what it makes of SPEC when not told: beside the spec
    file with ``suffix``, or ``NAME`` with ``suffix`` in the working folder for
    ``zoo:NAME`` (never into the installed package)."""
    if is_zoo(spec):
        return Path(spec[len(ZOO_PREFIX) :] + suffix)
    return Path(spec).with_suffix(suffix)


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """SPEC, -p and --allow-import, shared by every command that reads a spec."""
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="the YAML spec file ('-' reads standard input; zoo:NAME a spec of the "
        "model zoo, listed by nnspec zoo)",
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


def load_spec(args: argparse.Namespace) -> Spec:
    """The spec a command names: a file, or standard input for ``-`` (its errors then
    say ``<stdin>:line:col``; relative paths in it are read from the working folder)."""
    params = parse_params(args.params)
    if args.spec != STDIN:
        if args.allow_imports:
            importable_beside(args.spec)
        return load(args.spec, params, allow_imports=args.allow_imports)
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


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints ``nnspec X.Y.Z``."""
    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")


def run_command(
    handler: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Run a command, turning spec mistakes into exit status 2 and no traceback."""
    root = None
    if getattr(args, "confine", False):
        root = str(Path(args.spec).absolute().parent)
    try:
        with confined(root):
            return handler(args)
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except (UsageError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    except (GeneratedSourceError, ShapeRuleBug) as exc:
        print(
            f"error: internal error: {exc}; this is a bug in nnspec, not a mistake in "
            "the spec (nothing was written)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def at_least_one(what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= 1; ``what`` names it in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
        return value

    return parse
