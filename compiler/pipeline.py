"""The compiler's pipeline: one list of passes from validated spec to Python source.

lower_spec      spec -> graph templates (names, ops, references)
Instantiator    templates -> walked graphs (expressions, repeats, blocks, shapes)
block_class     walked block uses -> one class per block
apply_init      init rules and freeze globs -> statements of the model class
generate_source classes -> Python source
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec.collector import paused_gc
from ..spec.errors import suggest
from ..spec.model import SpecModel
from ..spec.validate import validate_document
from ..spec.yaml_source import Document
from .codegen import generate_source
from .expressions import ExpressionError, Scope, const, resolve_value
from .graph import ClassIR
from .passes.apply_init import ModuleEntry, apply_init
from .passes.assemble import block_class, model_class
from .passes.infer_shapes import GraphResult, Instantiator, model_inputs
from .passes.lower import lower_spec

__all__ = ["CompiledModel", "compile_document", "resolve_params"]


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


def resolve_params(
    doc: Document, spec: SpecModel, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The spec's params with overrides applied, expressions among them evaluated in order."""
    raw = dict(spec.params)
    for name, value in (overrides or {}).items():
        if name not in raw:
            known = ", ".join(raw) or "none"
            raise doc.error(
                ("params",) if "params" in doc.data else (),
                f"unknown param {name!r} was given{suggest(name, list(raw))}; "
                f"the spec's params: {known}",
                key=True,
            )
        raw[name] = value
    # One scope, grown as each param is resolved: each value is turned into its
    # literal once, so the work is linear in the number (and size) of the params.
    scope = Scope({})
    resolved: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            val = resolve_value(value, scope)
        except ExpressionError as exc:
            raise doc.error(("params", name), f"params.{name}: {exc}") from None
        resolved[name] = val.value
        scope.values[name] = val  # a literal: the scope names only literals
    return resolved


def compile_document(
    doc: Document,
    params: Mapping[str, Any] | None = None,
    allow_imports: Iterable[str] = (),
) -> CompiledModel:
    """Validate, resolve, infer shapes and generate source. Raises SpecError."""
    with paused_gc():  # see spec/collector.py: linear time, not quadratic
        return _compile(doc, params, allow_imports)


def _compile(
    doc: Document, params: Mapping[str, Any] | None, allow_imports: Iterable[str]
) -> CompiledModel:
    clock = _Clock()
    spec = validate_document(doc)
    clock.lap("validate")
    values = resolve_params(doc, spec, params)
    model_template, block_templates = lower_spec(
        doc, spec, values, frozenset(allow_imports)
    )
    clock.lap("resolve")
    instantiator = Instantiator(doc, block_templates)
    result = instantiator.run(
        model_template,
        {k: const(v) for k, v in values.items()},
        model_inputs(spec.inputs),
        symbolic=False,
    )
    clock.lap("shapes")
    blocks = [
        block_class(doc, block_templates[name], instantiator.uses[name])
        for name in block_templates
        if name in instantiator.uses
    ]
    model = model_class(model_template, result)
    modules = apply_init(model, spec, doc, values)
    imports = sorted(
        {
            m.op.import_module
            for cls in [model, *blocks]
            for m in _all_modules(cls)
            if m.op.import_module
        }
        | {
            c.callee.rsplit(".", 1)[0]
            for cls in [model, *blocks]
            for c in cls.calls
            if not c.callee.startswith(("self.", "torch.", "F."))
        }
    )
    source = generate_source(model, blocks, os.path.basename(doc.path), imports)
    weights = [("", spec.weights, ("weights",))] if spec.weights is not None else []
    weights += [
        (node.name, node.weights, (*node.path, "weights"))
        for node in model_template.nodes
        if node.weights is not None
    ]
    clock.lap("codegen")
    compiled = CompiledModel(
        doc, spec, values, model, blocks, result, modules, source, weights
    )
    compiled.stage_seconds = clock.seconds
    return compiled


class _Clock:
    """Seconds between laps, by the name of the stage each lap ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now


def _all_modules(cls: ClassIR) -> Iterable[Any]:
    stack = list(cls.modules)
    while stack:
        module = stack.pop()
        yield module
        if module.block is None:
            stack.extend(module.children)
