"""Pass: the spec's ``init`` rules and ``freeze`` globs -> statements of the model class.

Takes ``ctx.model``, ``ctx.spec`` and ``ctx.params``; fills the model class's
``init`` and ``freeze`` and gives ``ctx.modules`` (every module of the model, by
dotted path).
"""

from __future__ import annotations

import ast
import fnmatch
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.init as nn_init

from ...spec.errors import suggest
from ...spec.model import SpecModel
from ...spec.yaml_source import Document
from ..expressions import ExpressionError, Scope, const, literal_ast, resolve_value
from ..ir import ClassIR, CompileContext, InitStatement, ModuleDef, ModuleEntry

__all__ = ["ModuleEntry", "apply_init", "run", "walk_modules"]

_GLOB_CHARS = set("*?[")


def walk_modules(modules: list[ModuleDef], prefix: str = "") -> Iterator[ModuleEntry]:
    """Every module under ``modules``, in registration order, nested ones included."""
    for module in modules:
        if not module.present:  # a conditional module this use leaves out
            continue
        path = f"{prefix}{module.name}"
        kinds = module.kinds.get("", (module.value_class,))
        yield ModuleEntry(
            path,
            module.value_class,
            module.param_names,
            module.param_shapes,
            kinds,
            module.tensor,
            module.init,
        )
        for sub, class_name, params in module.nested:
            yield ModuleEntry(
                f"{path}.{sub}",
                class_name,
                tuple(n for n, _ in params),
                tuple(shape for _, shape in params),
                module.kinds.get(sub, (class_name,)),
            )
        if module.children:
            yield from walk_modules(module.children, f"{path}.")


def _initializers() -> dict[str, Any]:
    return {
        name[:-1]: getattr(nn_init, name)
        for name in dir(nn_init)
        if name.endswith("_")
        and not name.startswith("_")
        and callable(getattr(nn_init, name))
    }


def _matches(pattern: str, entry: ModuleEntry, class_names: set[str]) -> bool:
    if _GLOB_CHARS & set(pattern):
        return fnmatch.fnmatchcase(entry.path, pattern)
    if pattern in class_names:
        return pattern in (entry.kinds or (entry.class_name,))
    return entry.path == pattern


class _InitRules:
    def __init__(
        self,
        doc: Document,
        entries: list[ModuleEntry],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.doc = doc
        self.entries = entries
        self.scope = Scope({k: const(v) for k, v in (params or {}).items()})
        self.class_names = {k for e in entries for k in (e.kinds or (e.class_name,))}
        self.initializers = _initializers()
        self._tried: set[tuple[Any, ...]] = set()

    def value(self, raw: Any, path: tuple, what: str) -> Any:
        """An initialiser argument with its ``${...}`` expressions evaluated (in the
        model's params): the generated code holds the value as a literal."""
        try:
            return resolve_value(raw, self.scope).value
        except ExpressionError as exc:
            raise self.doc.error(path, f"{what}: {exc}") from None

    def initializer(
        self, raw: Any, path: tuple
    ) -> tuple[
        str, list[ast.expr], list[tuple[str, ast.expr]], list[Any], dict[str, Any]
    ]:
        if isinstance(raw, str):
            name, args = raw, None
        elif isinstance(raw, dict) and len(raw) == 1:
            name, args = next(iter(raw.items()))
        else:
            raise self.doc.error(
                path,
                "an initialiser is a name (xavier_normal) or a one-key mapping "
                "({normal: {mean: 0.0, std: 0.01}}, {constant: 0.3})",
            )
        if name not in self.initializers:
            raise self.doc.error(
                path,
                f"unknown initialiser {name!r}"
                + suggest(name, list(self.initializers))
                + "; initialisers are torch.nn.init's, without the trailing underscore",
            )
        fn = self.initializers[name]
        params = list(inspect.signature(fn).parameters)[1:]
        positional: list[ast.expr] = []
        keywords: list[tuple[str, ast.expr]] = []
        raw_args: list[Any] = []
        raw_kwargs: dict[str, Any] = {}
        if isinstance(args, dict):
            for key, value in args.items():
                if key not in params:
                    raise self.doc.error(
                        (*path, name, key),
                        f"{name} has no argument {key!r}"
                        + suggest(key, params)
                        + f"; its arguments: {', '.join(params)}",
                        key=True,
                    )
                value = self.value(value, (*path, name, key), f"{name}, {key}")
                keywords.append((key, literal_ast(value)))
                raw_kwargs[key] = value
        elif isinstance(args, list):
            raw_args = [
                self.value(v, (*path, name, j), f"{name}, argument {j + 1}")
                for j, v in enumerate(args)
            ]
            positional = [literal_ast(v) for v in raw_args]
        elif args is not None:
            raw_args = [self.value(args, (*path, name), name)]
            positional = [literal_ast(raw_args[0])]
        if len(positional) > len(params):
            raise self.doc.error(path, f"{name} takes at most {len(params)} arguments")
        return name, positional, keywords, raw_args, raw_kwargs

    def try_on(
        self, entry: ModuleEntry, param: str, call: tuple[Any, ...], path: tuple
    ) -> None:
        """Run the initialiser on a meta tensor of the parameter's shape: bad arguments
        and initialisers that do not fit the parameter fail here, not at build time."""
        name, positional, keywords, args, kwargs = call
        shape = entry.shape_of(param)
        key = (
            name,
            ast.dump(ast.Tuple([*positional, *(v for _, v in keywords)])),
            shape,
        )
        if key in self._tried:
            return
        self._tried.add(key)
        try:
            self.initializers[name](torch.empty(shape, device="meta"), *args, **kwargs)
        except Exception as exc:
            shown = ".".join([entry.path, param])
            raise self.doc.error(
                path, f"{name} cannot initialise {shown} (shape {list(shape)}): {exc}"
            ) from None

    def statements(self, spec: SpecModel) -> list[InitStatement]:
        # (module path, param) -> (rule index, initialiser call)
        final: dict[tuple[str, str], tuple[int, tuple[Any, ...]]] = {}
        for entry in self.entries:  # a bare tensor's own init:, before the rules
            if entry.init is not None:
                raw, where = entry.init
                call = self.initializer(raw, where)
                self.try_on(entry, "value", call, where)
                final[(entry.path, "value")] = (-1, call)
        for r, rule in enumerate(spec.init):
            rule_path = ("init", r)
            matched = [
                e for e in self.entries if _matches(rule.match, e, self.class_names)
            ]
            if not matched:
                raise self.doc.error(
                    (*rule_path, "match"),
                    f"init rule matches no module: {rule.match!r} is neither an op in this "
                    "model nor a node path"
                    + suggest(
                        rule.match, [*self.class_names, *(e.path for e in self.entries)]
                    ),
                )
            for param, raw in (rule.model_extra or {}).items():
                call = self.initializer(raw, (*rule_path, param))
                hits = [e for e in matched if param in e.params]
                if not hits:
                    have = sorted({p for e in matched for p in e.params})
                    raise self.doc.error(
                        (*rule_path, param),
                        f"init rule {rule.match!r}: none of the matching modules has a "
                        f"parameter {param!r}"
                        + suggest(param, have)
                        + f"; theirs: {', '.join(have) or 'none'}",
                        key=True,
                    )
                for entry in hits:
                    self.try_on(entry, param, call, (*rule_path, param))
                    final[(entry.path, param)] = (r, call)
        order = {e.path: i for i, e in enumerate(self.entries)}
        groups: dict[tuple[int, tuple[Any, ...]], list[str]] = {}
        per_module: dict[tuple[int, str], list[tuple[str, Any]]] = {}
        for (path, param), (r, call) in final.items():
            per_module.setdefault((r, path), []).append((param, call))
        for (r, path), calls in sorted(
            per_module.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])
        ):
            signature = tuple(
                (
                    p,
                    ast.dump(ast.Tuple([*c[1], *(v for _, v in c[2])], ast.Load())),
                    c[0],
                )
                for p, c in calls
            )
            groups.setdefault((r, signature), []).append(path)
        statements = []
        for (r, _), paths in groups.items():
            calls = per_module[(r, paths[0])]
            tensors = {e.path for e in self.entries if e.tensor is not None}
            statements.append(
                InitStatement(
                    paths,
                    [
                        # A bare tensor is its own 'value': nn.init.normal_(self.pos)
                        ("" if paths[0] in tensors else param, c[0], c[1], c[2])
                        for param, c in calls
                    ],
                )
            )
        return statements


def _freeze(doc: Document, spec: SpecModel, entries: list[ModuleEntry]) -> list[str]:
    class_names = {k for e in entries for k in (e.kinds or (e.class_name,))}
    frozen: list[str] = []
    for i, pattern in enumerate(spec.freeze):
        matched = [e for e in entries if _matches(pattern, e, class_names)]
        if not matched:
            raise doc.error(
                ("freeze", i),
                f"freeze {pattern!r} matches no module"
                + suggest(pattern, [e.path for e in entries]),
            )
        for entry in matched:
            if entry.path not in frozen:
                frozen.append(entry.path)
    roots = [
        p
        for p in frozen
        if not any(p.startswith(f"{other}.") for other in frozen if other != p)
    ]
    order = {e.path: i for i, e in enumerate(entries)}
    return sorted(roots, key=order.__getitem__)


def apply_init(
    model: ClassIR,
    spec: SpecModel,
    doc: Document,
    params: Mapping[str, Any] | None = None,
) -> list[ModuleEntry]:
    """Fill the model class's init statements and frozen modules; returns the module list.

    ``params`` (the model's, overrides applied) are what ``${...}`` in the rules' initialiser
    arguments may name."""
    entries = list(walk_modules(model.modules))
    if spec.init or any(e.init is not None for e in entries):
        model.init = _InitRules(doc, entries, params).statements(spec)
    if spec.freeze:
        model.freeze = _freeze(doc, spec, entries)
    return entries


def run(ctx: CompileContext) -> None:
    assert ctx.model is not None and ctx.spec is not None
    ctx.modules = apply_init(ctx.model, ctx.spec, ctx.document, ctx.params)
