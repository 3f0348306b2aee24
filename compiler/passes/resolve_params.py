"""Pass: the spec's params and the caller's overrides -> their values.

Takes ``ctx.spec`` and ``ctx.overrides``; gives ``ctx.params`` (expressions among
the params evaluated in order, each seeing the ones before it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...spec.errors import suggest
from ...spec.model import SpecModel
from ...spec.yaml_source import Document
from ..expressions import ExpressionError, Scope, resolve_value
from ..ir import CompileContext

__all__ = ["resolve_params", "run"]


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


def run(ctx: CompileContext) -> None:
    assert ctx.spec is not None
    ctx.params = resolve_params(ctx.document, ctx.spec, ctx.overrides)
