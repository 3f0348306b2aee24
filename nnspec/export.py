"""``nnspec export SPEC|RUN --format onnx|pt2``: a compiled model for other runtimes.

The model is exported with torch's own exporters (``torch.export`` for ``.pt2``, the
dynamo-based ``torch.onnx.export`` for ``.onnx``), in eval mode. The batch dimension
of every input is dynamic, and so is each dimension named with ``--dynamic``; inputs
and outputs keep the spec's names (a dict output's keys name the ONNX outputs). The
exported program is then run on inputs of another batch size (and other sizes of the
dynamic dimensions) and compared with the eager model: ONNX Runtime runs the ``.onnx``
file when it is installed, else the file is checked with ``onnx.checker``.

Given a run directory of ``nnspec train``, the model is built from the run's spec and
loaded with the weights of its best (or last) checkpoint.
"""

from __future__ import annotations

import argparse
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .commands import (
    UsageError,
    add_spec_arguments,
    default_output,
    load_spec,
    parse_params,
)

__all__ = ["ExportReport", "export_model", "register_export"]

FORMATS = ("onnx", "pt2")
# How close the exported program's outputs must be to the eager model's.
_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
_DYNAMIC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):([0-9]+)\Z")


@dataclass
class ExportReport:
    """What was written and how it was checked."""

    path: Path
    format: str
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, list[int]]
    checked_with: str
    max_difference: float | None = None

    def __str__(self) -> str:
        dims = ", ".join(f"{n}{d}" for n, d in self.dynamic.items())
        diff = (
            f", max |exported - eager| {self.max_difference:.2e}"
            if self.max_difference is not None
            else ""
        )
        return (
            f"wrote {self.path} ({self.format}; inputs {', '.join(self.inputs)}; "
            f"outputs {', '.join(self.outputs)}; dynamic dims {dims}); "
            f"checked with {self.checked_with}{diff}"
        )


def _flat(outputs: Any) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for value in outputs.values() for t in _flat(value)]
    if isinstance(outputs, (tuple, list)):
        return [t for value in outputs for t in _flat(value)]
    return []


def _parse_dynamic(items: list[str], spec: Any) -> dict[str, list[int]]:
    """``["x:1"]`` -> ``{"x": [0, 1]}``: dimension 1 of x dynamic, besides the batch."""
    model = spec.compiled.model
    ranks = {name: len(v.shape) for name, v in zip(model.inputs, model.input_values)}
    dynamic = {name: [0] for name in model.inputs}
    for item in items:
        match = _DYNAMIC.match(item)
        if not match:
            raise UsageError(
                f"--dynamic expects INPUT:DIM (e.g. x:1), received {item!r}"
            )
        name, dim = match.group(1), int(match.group(2))
        if name not in ranks:
            raise UsageError(
                f"--dynamic {item}: no input {name!r}; inputs: {', '.join(ranks)}"
            )
        if not 1 <= dim < ranks[name]:
            raise UsageError(
                f"--dynamic {item}: {name} has dimensions 1..{ranks[name] - 1} "
                "besides the batch (0, always dynamic)"
            )
        if dim not in dynamic[name]:
            dynamic[name].append(dim)
    return dynamic


def _inputs(
    spec: Any, model: nn.Module, batch: int, dynamic: dict[str, list[int]], grow: int
) -> list[torch.Tensor]:
    """Random inputs with ``batch`` rows; dynamic dims ``grow`` larger than declared."""
    from .inspection.profile import synthetic_batch

    tensors = synthetic_batch(spec, model, batch, torch.device("cpu"))
    names = spec.compiled.model.inputs
    out = []
    for name, tensor in zip(names, tensors):
        extra = [d for d in dynamic[name] if d != 0]
        if extra and grow:
            shape = list(tensor.shape)
            for d in extra:
                shape[d] += grow
            tensor = _random_like(tensor, shape)
        out.append(tensor)
    return out


def _random_like(tensor: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """A random tensor like ``tensor`` (dtype, value range) of another shape."""
    if tensor.is_floating_point():
        return torch.randn(shape, dtype=tensor.dtype)
    high = int(tensor.max().item()) + 1 if tensor.numel() else 2
    return torch.randint(0, max(high, 1), shape, dtype=tensor.dtype)


def named_dims(spec: Any) -> dict[tuple[str, int], str]:
    """(input, dim) -> name, for the sizes the spec's inputs name (``{seq: 16}``)."""
    model = spec.compiled.model
    found: dict[tuple[str, int], str] = {}
    for name, value in zip(model.inputs, model.input_values):
        for d, dim in enumerate(getattr(value, "dynamic", ())):
            if dim is not None:
                found[(name, d)] = dim
    return found


def _with_named(spec: Any, dynamic: dict[str, list[int]]) -> dict[str, list[int]]:
    """The dynamic dims with every named size of the inputs added: those are
    dynamic by declaration."""
    merged = {name: list(dims) for name, dims in dynamic.items()}
    for name, d in named_dims(spec):
        dims = merged.setdefault(name, [0])
        if d not in dims:
            dims.append(d)
    return merged


def _shapes(
    dynamic: dict[str, list[int]], named: dict[tuple[str, int], str] | None = None
) -> tuple[dict[int, Any], ...]:
    """torch.export's dynamic shapes: one Dim for the batch, one per named size
    (shared by the inputs that name it), one per other dynamic dim."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1 << 20)
    by_name: dict[str, Any] = {}
    shapes = []
    for name, dims in dynamic.items():
        entry: dict[int, Any] = {}
        for d in dims:
            label = (named or {}).get((name, d))
            if d == 0:
                entry[d] = batch
            elif label is not None:
                entry[d] = by_name.setdefault(label, Dim(label, min=1, max=1 << 20))
            else:
                entry[d] = Dim(f"{name}_dim{d}", min=1, max=1 << 20)
        shapes.append(entry)
    return tuple(shapes)


def export_model(
    spec: Any,
    model: nn.Module,
    path: str | Path,
    fmt: str,
    dynamic: dict[str, list[int]] | None = None,
) -> ExportReport:
    """Export ``model`` (built from ``spec``) to ``path`` and check it against eager."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    target = Path(path)
    model = model.eval()
    names = list(spec.compiled.model.inputs)
    from .runtime.settings import output_names

    outputs = output_names(spec)
    dynamic = _with_named(spec, dynamic or {name: [0] for name in names})
    # The caller's random state is left as it was; the exporters' own deprecation
    # chatter is not shown.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _export(spec, model, target, fmt, names, outputs, dynamic)


def _export(
    spec: Any,
    model: nn.Module,
    target: Path,
    fmt: str,
    names: list[str],
    outputs: list[str],
    dynamic: dict[str, list[int]],
) -> ExportReport:
    torch.manual_seed(0)
    example = _inputs(spec, model, 2, dynamic, grow=0)
    probe = _inputs(spec, model, 3, dynamic, grow=1)
    with torch.no_grad():
        expected = _flat(model(*probe))
    report = ExportReport(target, fmt, names, outputs, dynamic, checked_with="")
    got: list[torch.Tensor] | None
    if fmt == "pt2":
        program = _export_program(model, example, dynamic, named_dims(spec))
        torch.export.save(program, str(target))
        loaded = torch.export.load(str(target))
        with torch.no_grad():
            got = _flat(loaded.module()(*probe))
        report.checked_with = "torch.export.load on other sizes of the dynamic dims"
    else:
        got = _export_onnx(
            model, example, probe, dynamic, names, outputs, target, report
        )
    if got is not None:
        report.max_difference = _compare(expected, got)
    return report


def _export_program(
    model: nn.Module,
    example: list[torch.Tensor],
    dynamic: dict[str, list[int]],
    named: dict[tuple[str, int], str] | None = None,
) -> Any:
    try:
        return torch.export.export(
            model,
            tuple(example),
            dynamic_shapes=_shapes(dynamic, named),
            strict=False,
        )
    except Exception as exc:  # torch's exporter errors are many kinds
        raise _export_failure("torch.export", exc, dynamic) from None


def _export_failure(
    exporter: str, exc: Exception, dynamic: dict[str, list[int]]
) -> UsageError:
    """An exporter's failure in one line: its first line, and what a violated
    constraint means here."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    hint = (
        " (a dimension marked --dynamic has a size the model fixes)"
        if "Constraints violated" in text
        else ""
    )
    return UsageError(
        f"{exporter} could not export the model with dynamic dims {dynamic}"
        f"{hint}: {first}"
    )


def _export_onnx(
    model: nn.Module,
    example: list[torch.Tensor],
    probe: list[torch.Tensor],
    dynamic: dict[str, list[int]],
    names: list[str],
    outputs: list[str],
    target: Path,
    report: ExportReport,
) -> list[torch.Tensor] | None:
    import importlib.util

    for needed in ("onnx", "onnxscript"):
        if importlib.util.find_spec(needed) is None:
            raise UsageError(
                f"--format onnx needs the {needed} package: pip install onnx onnxscript"
            )
    # torch.onnx.export specialises a dimension the model fixes instead of failing:
    # torch.export first refuses it, with a message that says why.
    _export_program(model, example, dynamic)
    size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    try:
        onnx_program = torch.onnx.export(
            model,
            tuple(example),
            dynamic_shapes=_shapes(dynamic),
            input_names=names,
            output_names=outputs,
            dynamo=True,
            external_data=size > (1 << 30),
            verbose=False,
        )
    except Exception as exc:  # the exporter's errors are many kinds
        raise _export_failure("torch.onnx.export", exc, dynamic) from None
    assert onnx_program is not None
    onnx_program.save(str(target), external_data=size > (1 << 30))
    import onnx

    onnx.checker.check_model(str(target))
    if importlib.util.find_spec("onnxruntime") is None:
        report.checked_with = "onnx.checker (install onnxruntime to compare outputs)"
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(target), providers=["CPUExecutionProvider"]
    )
    feeds = {name: t.numpy() for name, t in zip(names, probe)}
    got = session.run(outputs, feeds)
    report.checked_with = "ONNX Runtime on other sizes of the dynamic dims"
    return [torch.from_numpy(g) for g in got]


def _compare(expected: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    if len(expected) != len(got):
        raise UsageError(
            f"the exported model returns {len(got)} tensors, the eager one {len(expected)}"
        )
    worst = 0.0
    for want, have in zip(expected, got):
        if tuple(want.shape) != tuple(have.shape):
            raise UsageError(
                f"the exported model returns shape {tuple(have.shape)} where the eager "
                f"model returns {tuple(want.shape)}"
            )
        if not want.is_floating_point():
            if not torch.equal(want, have.to(want.dtype)):
                raise UsageError(
                    "the exported model's integer outputs differ from eager"
                )
            continue
        diff = (
            (want.double() - have.double()).abs().max().item() if want.numel() else 0.0
        )
        scale = max(1.0, want.abs().max().item() if want.numel() else 1.0)
        if diff > _TOLERANCE.get(want.dtype, 1e-2) * scale:
            raise UsageError(
                f"the exported model's outputs differ from eager by {diff:.3g}"
            )
        worst = max(worst, diff)
    return worst


# -- the command ---------------------------------------------------------------------


def _model_and_spec(args: argparse.Namespace) -> tuple[Any, nn.Module, str]:
    """The spec and the built model; from a run directory with its checkpoint."""
    source = Path(args.spec)
    if args.spec != "-" and source.is_dir():
        from .api import load
        from .runtime.checkpoint import read_run_checkpoint

        spec_file = source / "spec.yaml"
        if not spec_file.is_file():
            raise UsageError(
                f"{source} is not a run directory of nnspec train (no spec.yaml)"
            )
        spec = load(
            spec_file, parse_params(args.params), allow_imports=args.allow_imports
        )
        state = read_run_checkpoint(source, args.checkpoint)
        model = spec.build()
        model.load_state_dict(state["model"], strict=True)
        return spec, model, source.name
    spec = load_spec(args)
    stem = spec.name if args.spec == "-" else default_output(args.spec, "").stem
    return spec, spec.build(), stem


def export_command(args: argparse.Namespace) -> int:
    spec, model, stem = _model_and_spec(args)
    dynamic = _parse_dynamic(args.dynamic or [], spec)
    target = Path(args.output) if args.output else Path(f"{stem}.{args.format}")
    if target.suffix != f".{args.format}":
        raise UsageError(f"-o {target}: a {args.format} file ends in .{args.format}")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; give --force to replace it")
    report = export_model(spec, model, target, args.format, dynamic)
    print(report)
    return 0


def register_export(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "--format", choices=FORMATS, default="onnx", help="onnx (default) or pt2"
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="where to write (default: NAME.FORMAT)"
    )
    parser.add_argument(
        "--dynamic",
        action="append",
        metavar="INPUT:DIM",
        help="also keep this input dimension dynamic (repeatable; the batch always is)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="with a run directory: which checkpoint's weights (default: best)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace FILE if it exists"
    )
    parser.set_defaults(handler=export_command)
