"""``nnspec schema`` and ``nnspec init``: the JSON Schema for editors, and a starter spec.

The schema ships inside the package (``nnspec/schemas``); after ``pip install`` its
path is in site-packages, so ``nnspec schema --path`` prints it and ``nnspec init``
writes a spec whose modeline points at it.
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from importlib import resources
from pathlib import Path

from .commands import UsageError

__all__ = ["register_init", "register_schema", "schema_path", "starter_spec"]

_SCHEMA_FILE = "nnspec.schema.json"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def schema_path() -> Path:
    """Where the installed package keeps its JSON Schema."""
    return Path(str(resources.files("nnspec.schemas").joinpath(_SCHEMA_FILE)))


# -- schema --------------------------------------------------------------------------


def schema_command(args: argparse.Namespace) -> int:
    path = schema_path()
    if args.path:
        print(path)
        return 0
    text = path.read_text(encoding="utf-8")
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    _refuse_existing(target, args.force)
    _write(target, text)
    print(f"wrote {target}")
    return 0


def register_schema(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the schema to FILE (default: standard output)",
    )
    parser.add_argument(
        "--path",
        action="store_true",
        help="print where the installed schema is, for an editor's settings",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace FILE if it exists"
    )
    parser.set_defaults(handler=schema_command)


# -- init ----------------------------------------------------------------------------


def starter_spec(class_name: str, schema: str) -> str:
    """A small spec that compiles and trains, with a modeline pointing at ``schema``."""
    return f"""\
# yaml-language-server: $schema={schema}
# A starter spec: edit the layers, then `compile-model` it or `nnspec train` it.
nnspec: 1
name: {class_name}
params:
  hidden: 64                # names for expressions: "${{hidden}}"
  classes: 10
inputs:
  x: [16]                   # one input of 16 features (the batch dimension is implied)
layers:
  - {{op: Linear, name: fc1, out_features: "${{hidden}}"}}
  - ReLU
  - {{op: Dropout, p: 0.1}}
  - {{op: Linear, name: head, out_features: "${{classes}}"}}
train:
  data: {{source: {{synthetic: 512}}, batch_size: 32, val_fraction: 0.1}}
  loss: {{head: {{op: CrossEntropyLoss, target: label}}}}
  metrics: {{head: [accuracy]}}
  optimizer: {{op: AdamW, lr: 0.001}}
  epochs: 2
"""


def init_command(args: argparse.Namespace) -> int:
    name = args.name
    target = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    stem = target.stem
    if not _NAME.match(stem) or keyword.iskeyword(stem):
        raise UsageError(
            f"{name!r}: a spec name starts with a letter and holds letters, digits "
            "and underscores (it names the generated module)"
        )
    class_name = "".join(part[:1].upper() + part[1:] for part in stem.split("_"))
    _refuse_existing(target, force=False)
    schema = args.schema or schema_path().as_posix()
    _write(target, starter_spec(class_name, schema))
    print(f"wrote {target}: compile it with `compile-model {target}`")
    return 0


def register_init(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", metavar="NAME", help="the spec to write: NAME.yaml (class NAME)"
    )
    parser.add_argument(
        "--schema",
        metavar="PATH_OR_URL",
        help="what the modeline points at (default: the installed schema's path)",
    )
    parser.set_defaults(handler=init_command)


def _refuse_existing(target: Path, force: bool) -> None:
    if (target.exists() or target.is_symlink()) and not force:
        raise UsageError(f"{target} exists; nnspec does not overwrite it")


def _write(target: Path, text: str) -> None:
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
