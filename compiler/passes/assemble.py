"""Pass: the walks of each block's uses -> one class per block, checked to agree."""

from __future__ import annotations

import ast

from ...spec.errors import SpecError
from ...spec.yaml_source import Document
from ..expressions import literal_ast
from ..ir import (
    BlockUse,
    ClassIR,
    CompileContext,
    CtorParam,
    GraphResult,
    GraphTemplate,
    ParamDecl,
)

__all__ = ["block_class", "model_class"]

_ANNOTATIONS = {bool: "bool", int: "int", float: "float", str: "str", list: "list"}
_DECLARED = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "list": "list",
}


def _annotation(decl: ParamDecl, seen: list[object]) -> str:
    if decl.type in _DECLARED:
        base = _DECLARED[decl.type]
        optional = (not decl.required and decl.default is None) or None in seen
        return f"{base} | None" if optional else base
    names: list[str] = []
    for value in [*seen, decl.default]:
        name = _ANNOTATIONS.get(type(value))
        if name and name not in names:
            names.append(name)
    if "int" in names and "float" in names:
        names.remove("int")
    if not names:
        return "object"
    if any(v is None for v in [*seen, decl.default]):
        names.append("None")
    return " | ".join(names)


def _fingerprint(result: GraphResult) -> str:
    parts = [ast.dump(m.ctor) for m in result.modules]
    for call in result.calls:
        parts.append(
            f"{call.node}|{call.callee}|{call.inputs}|"
            + "|".join(ast.dump(a) for a in call.args)
            + "|".join(f"{k}={ast.dump(v)}" for k, v in call.kwargs)
        )
    parts += [f"{name}" for name, _ in result.hoisted]
    parts += [f"{name}={ast.dump(v)}" for name, v in result.attributes]
    return "\n".join(parts)


def _used_names(result: GraphResult) -> set[str]:
    used: set[str] = set()
    for module in result.modules:
        used |= {n.id for n in ast.walk(module.ctor) if isinstance(n, ast.Name)}
    for _, value in result.attributes:
        used |= {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    return used


def block_class(
    doc: Document, template: GraphTemplate, uses: list[BlockUse]
) -> ClassIR:
    """The class of a block, from its uses; all uses must build the same structure."""
    first = uses[0]
    reference = _fingerprint(first.result)
    for use in uses[1:]:
        if _fingerprint(use.result) != reference:
            line = doc.where(first.node_path)[0]
            raise SpecError(
                diagnostics=[
                    doc.diagnostic(
                        use.node_path,
                        f"block {template.name} builds different layers here than at line "
                        f"{line} (a repeat count or a value that its params cannot express "
                        "differs); one class serves every use, so make the difference a param",
                    )
                ],
                source=doc.source,
            )
    result = first.result
    used = _used_names(result)
    params: list[CtorParam] = [
        CtorParam(name, "int") for name in result.placeholders if name in used
    ]
    decls: dict[str, ParamDecl] = template.params
    for name, decl in decls.items():
        if name in result.fixed:
            continue
        seen = [u.result.param_values.get(name) for u in uses]
        default = None if decl.required else literal_ast(decl.default)
        params.append(CtorParam(name, _annotation(decl, seen), default, decl.doc))
    for name, val in result.hoisted:
        params.append(CtorParam(name, _ANNOTATIONS.get(type(val.value), "object")))
    return model_class(template, result, params)


def model_class(
    template: GraphTemplate, result: GraphResult, params: list[CtorParam] | None = None
) -> ClassIR:
    """The class of a walked graph, taking ``params``."""
    return ClassIR(
        name=template.name,
        doc=template.doc,
        params=params or [],
        inputs=template.inputs,
        input_values=result.input_values,
        modules=result.modules,
        calls=result.calls,
        outputs=template.outputs,
        output_value=result.output_value,
        attributes=result.attributes,
    )


def run(ctx: CompileContext) -> None:
    """assemble: one class per block (from its uses) and the model's class."""
    assert ctx.model_template is not None and ctx.result is not None
    ctx.blocks = [
        block_class(ctx.document, template, ctx.uses[name])
        for name, template in ctx.block_templates.items()
        if name in ctx.uses
    ]
    ctx.model = model_class(ctx.model_template, ctx.result, ctx.model_params)
