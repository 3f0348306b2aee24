"""Pass: the walks of each block's uses -> one class per block, checked to agree."""

from __future__ import annotations

import ast
import dataclasses

from ...spec.errors import SpecError
from ...spec.yaml_source import Document
from ..expressions import literal_ast
from ..ir import (
    BlockUse,
    Call,
    CallKind,
    ClassIR,
    CompileContext,
    CtorParam,
    GraphResult,
    GraphTemplate,
    ModuleDef,
    Outputs,
    ParamDecl,
    Ref,
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


def _module_print(module: ModuleDef) -> str:
    return ast.dump(module.ctor)


def _call_print(call: Call) -> str:
    return (
        f"{call.node}|{call.callee}|{call.inputs}|"
        + "|".join(ast.dump(a) for a in call.args)
        + "|".join(f"{k}={ast.dump(v)}" for k, v in call.kwargs)
    )


def _fingerprint(result: GraphResult) -> str:
    """What every use must build alike. A conditional node (``when:``) counts by its
    name and condition only: a use may leave it out (its layers are compared among
    the uses that build it, by ``_merged``)."""
    parts = []
    for m in result.modules:
        if m.condition is not None:
            parts.append(f"{m.name} if {ast.dump(m.condition)}")
        else:
            parts.append(_module_print(m))
    for call in result.calls:
        if call.condition is not None:
            parts.append(f"{call.node}|{call.inputs} if {ast.dump(call.condition)}")
        else:
            parts.append(_call_print(call))
    parts += [f"{name}" for name, _ in result.hoisted]
    parts += [f"{name}={ast.dump(v)}" for name, v in result.attributes]
    return "\n".join(parts)


def _unknown(module: ModuleDef) -> bool:
    """An absent conditional module whose constructor could not be made."""
    return isinstance(module.ctor, ast.Constant) and module.ctor.value is None


def _merged(
    doc: Document, template: GraphTemplate, uses: list[BlockUse]
) -> GraphResult:
    """The walk the class is written from: the first use's, with each conditional
    module and call taken from a use that builds it. Uses that build it must build
    it alike; where none does, the node is left out of the class."""
    first = uses[0].result
    if not any(m.condition is not None for m in first.modules) and not any(
        c.condition is not None for c in first.calls
    ):
        return first
    modules: list[ModuleDef] = []
    for k, module in enumerate(first.modules):
        if module.condition is None:
            modules.append(module)
            continue
        present = [
            (u, u.result.modules[k]) for u in uses if u.result.modules[k].present
        ]
        for use, other in present[1:]:
            if _module_print(other) != _module_print(present[0][1]):
                _differ(doc, template, present[0][0], use)
        chosen = present[0][1] if present else module
        if not present:
            known = [u.result.modules[k] for u in uses]
            chosen = next((m for m in known if not _unknown(m)), module)
        if not _unknown(chosen):
            modules.append(chosen)
    kept = {m.name for m in modules}
    calls: list[Call] = []
    aliases: dict[str, Ref] = {}
    for k, call in enumerate(first.calls):
        if call.condition is None:
            calls.append(_realiased(call, aliases))
            continue
        present_calls = [
            (u, u.result.calls[k]) for u in uses if u.result.calls[k].present
        ]
        for use, other_call in present_calls[1:]:
            if _call_print(other_call) != _call_print(present_calls[0][1]):
                _differ(doc, template, present_calls[0][0], use)
        chosen_call = present_calls[0][1] if present_calls else call
        if call.kind != CallKind.FUNCTION and call.node not in kept:
            # No use builds it, and its constructor is unknown: pass-through only.
            refs = chosen_call.inputs
            first_ref = next(iter(refs.values())) if isinstance(refs, dict) else refs[0]
            aliases[call.node] = aliases.get(first_ref.name, first_ref)
            continue
        calls.append(_realiased(chosen_call, aliases))
    outputs = first.outputs or template.outputs
    if aliases:
        outputs = Outputs(
            outputs.kind,
            [_alias(r, aliases) for r in outputs.refs],
            outputs.keys,
            outputs.path,
        )
    return dataclasses.replace(first, modules=modules, calls=calls, outputs=outputs)


def _alias(ref: Ref, aliases: dict[str, Ref]) -> Ref:
    target = aliases.get(ref.name)
    if target is None:
        return ref
    return Ref(target.name, (*target.index, *ref.index), ref.path)


def _realiased(call: Call, aliases: dict[str, Ref]) -> Call:
    if not aliases:
        return call
    inputs: list[Ref] | dict[str, Ref]
    if isinstance(call.inputs, dict):
        inputs = {k: _alias(r, aliases) for k, r in call.inputs.items()}
    else:
        inputs = [_alias(r, aliases) for r in call.inputs]
    return dataclasses.replace(call, inputs=inputs)


def _differ(
    doc: Document, template: GraphTemplate, first: BlockUse, use: BlockUse
) -> None:
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


def _used_names(result: GraphResult) -> set[str]:
    used: set[str] = set()
    for module in result.modules:
        used |= {n.id for n in ast.walk(module.ctor) if isinstance(n, ast.Name)}
        if module.condition is not None:
            used |= {
                n.id for n in ast.walk(module.condition) if isinstance(n, ast.Name)
            }
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
            _differ(doc, template, first, use)
    result = _merged(doc, template, uses)
    used = _used_names(result)
    for use in uses:
        # A size only a conditional module reads, which this use leaves out and
        # whose constructor it could not make: the use does not pass it.
        missing = [
            name
            for name in result.placeholders
            if name in used and name not in _used_names(use.result)
        ]
        if missing:
            raise SpecError(
                diagnostics=[
                    doc.diagnostic(
                        use.node_path,
                        f"block {template.name}: a conditional node that other "
                        f"uses build reads {missing[0]}, and this use, which leaves "
                        "it out, cannot build it for its inputs; one class serves "
                        "every use, so write two blocks",
                    )
                ],
                source=doc.source,
            )
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
        outputs=result.outputs or template.outputs,
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
