"""The compiler's pipeline: one list of passes from validated spec to Python source.

Each pass is a function of the one ``CompileContext`` (compiler/ir.py): it reads
what earlier passes filled in and fills in its own part. ``PIPELINE`` runs them in
order; each pass's seconds are added to its stage's (``CompiledModel.stage_seconds``).

validate        document -> spec (JSON Schema, pydantic)           passes/validate.py
resolve_params  spec params and overrides -> values                passes/resolve_params.py
lower           spec -> graph templates (names, ops, references)   passes/lower.py
infer_shapes    templates -> walked graphs (shapes, blocks)        passes/infer_shapes.py
assemble        walked graphs -> one class per graph               passes/assemble.py
apply_init      init rules and freeze globs -> model statements    passes/apply_init.py
generate        classes -> Python source (compiler/codegen.py)     passes/generate.py
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec.collector import paused_gc
from ..spec.model import SpecModel
from ..spec.yaml_source import Document
from .ir import ClassIR, CompileContext, GraphResult, ModuleEntry
from .passes import (
    apply_init,
    assemble,
    generate,
    infer_shapes,
    lower,
    tie,
    validate,
)
from .passes import resolve_params as params
from .passes.resolve_params import resolve_params

__all__ = ["PIPELINE", "CompiledModel", "Pass", "compile_document", "resolve_params"]


@dataclass(frozen=True)
class Pass:
    """One pass: its name, the stage its time counts to, and its function."""

    name: str
    stage: str  # a key of CompiledModel.stage_seconds
    run: Callable[[CompileContext], None]


PIPELINE: tuple[Pass, ...] = (
    Pass("validate", "validate", validate.run),
    Pass("resolve_params", "resolve", params.run),
    Pass("lower", "resolve", lower.run),
    Pass("infer_shapes", "shapes", infer_shapes.run),
    Pass("assemble", "codegen", assemble.run),
    Pass("apply_init", "codegen", apply_init.run),
    Pass("tie", "codegen", tie.run),
    Pass("generate", "codegen", generate.run),
)


@dataclass
class CompiledModel:
    """Everything the compiler found out about a spec, and the source it generated."""

    document: Document
    spec: SpecModel
    params: dict[str, Any]
    model: ClassIR
    blocks: list[ClassIR]
    result: GraphResult
    modules: list[ModuleEntry]
    source: str
    #: Weights to load at build time: (module path, '' for the whole model; the
    #: WeightsSpec; where it is written).
    weights: list[tuple[str, Any, tuple]] = field(default_factory=list)
    #: Seconds each stage took: validate, resolve (params and graph templates), shapes
    #: (the walk that infers them), codegen (classes, init and source).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.name


def compile_document(
    doc: Document,
    params: Mapping[str, Any] | None = None,
    allow_imports: Iterable[str] = (),
) -> CompiledModel:
    """Validate, resolve, infer shapes and generate source. Raises SpecError."""
    ctx = CompileContext(doc, params, frozenset(allow_imports))
    seconds: dict[str, float] = {}
    with paused_gc():  # see spec/collector.py: linear time, not quadratic
        for step in PIPELINE:
            start = time.perf_counter()
            step.run(ctx)
            seconds[step.stage] = seconds.get(step.stage, 0.0) + (
                time.perf_counter() - start
            )
    assert ctx.spec is not None and ctx.model is not None and ctx.result is not None
    return CompiledModel(
        doc,
        ctx.spec,
        ctx.params,
        ctx.model,
        ctx.blocks,
        ctx.result,
        ctx.modules,
        ctx.source,
        ctx.weights,
        seconds,
    )
