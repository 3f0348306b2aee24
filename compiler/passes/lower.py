"""Pass: validated spec -> graph templates (names given, ops and references resolved)."""

from __future__ import annotations

import keyword
from typing import Any

from ...spec.errors import Diagnostic, SpecError, suggest
from ...spec.model import BlockParam, NodeSpec, SpecModel
from ...spec.yaml_source import Document
from ..graph import GraphTemplate, NodeTemplate, Outputs, Ref
from ..names import Namespace, class_name_problem, name_problem, snake_case
from ..ops import (
    OpInfo,
    OpLookupError,
    arguments_of,
    input_names,
    module_names,
    resolve_op,
)

__all__ = ["ParamDecl", "inputs_by_name", "lower_spec"]

_RESERVED_NODE_KEYS = {"op", "name", "in", "args", "repeat", "use"}


def _valid_argument(key: str) -> bool:
    return (
        key.isascii()
        and key.isidentifier()
        and not keyword.iskeyword(key)
        and not key.startswith("__")
    )


# Names that are not ops, and what to write instead.
_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
_TENSOR_HOLDERS = ("Parameter", "ParameterList", "ParameterDict", "Buffer")


def _unknown_op_hint(op: str) -> str:
    """What to write for a name that looks like an op but is not one."""
    name = op.rpartition(".")[2]
    if name in _CONTAINERS:
        return (
            "; containers are not ops: write the layers in a block (blocks:) and use "
            "the block as the op, or repeat: N for chained copies of a layer"
        )
    if name in _TENSOR_HOLDERS:
        return (
            f"; a bare {name} is not a layer: write a custom module that holds it "
            "(an nn.Module class in your package, op: package.module:Name, compiled "
            "with --allow-import package)"
        )
    return ""


def inputs_by_name(op: OpInfo, given: Any, key: str, ref: str) -> str:
    """``in: {query: x, key: x, value: x, attn_mask: mask}``: the node's inputs given by
    name, with ``ref`` added as its input ``key`` (``given``: the node's ``in``, written
    or lowered)."""
    names = input_names(op) or []
    if isinstance(given, (str, Ref)):
        given = [given]
    entries: list[str] = []
    if isinstance(given, dict):
        entries = [f"{k}: {v}" for k, v in given.items() if k != key]
    elif isinstance(given, list) and len(given) <= len(names):
        entries = [f"{n}: {r}" for n, r in zip(names, given) if n != key]
    elif given:
        entries = ["..."]
    return "in: {" + ", ".join([*entries, f"{key}: {ref}"]) + "}"


class ParamDecl:
    """A block parameter: its type ('any' when undeclared), default, and whether required."""

    def __init__(
        self, type_: str, default: Any, required: bool, doc: str | None
    ) -> None:
        self.type = type_
        self.default = default
        self.required = required
        self.doc = doc


class _Lowering:
    def __init__(
        self, doc: Document, spec: SpecModel, allow_imports: frozenset[str]
    ) -> None:
        self.doc = doc
        self.spec = spec
        self.allow_imports = allow_imports
        self.errors: list[Diagnostic] = []
        self.block_decls: dict[str, dict[str, ParamDecl]] = {}
        # Names of nodes of the graph being lowered that failed to lower: references
        # to them are not reported again (the node's own error is the root cause).
        self.failed: set[str] = set()
        self._written_in: Any = None  # the 'in' of the node whose arguments are checked

    def error(self, path: tuple, message: str, *, key: bool = False) -> None:
        self.errors.append(self.doc.diagnostic(path, message, key=key))

    def raise_errors(self) -> None:
        if self.errors:
            errors = sorted(self.errors, key=lambda d: (d.line, d.column))
            raise SpecError(diagnostics=errors, source=self.doc.source)

    # -- graphs ---------------------------------------------------------------

    def graph(
        self,
        name: str,
        kind: str,
        doc: str | None,
        params: dict[str, Any],
        inputs: list[str],
        layers: list[Any],
        outputs: Any,
        base: tuple,
    ) -> GraphTemplate:
        input_path = (*base, "inputs") if kind == "block" else ("inputs",)
        for i, input_name in enumerate(inputs):
            problem = name_problem(input_name, attribute=False)
            at = (*input_path, i) if kind == "block" else (*input_path, input_name)
            if problem:
                self.error(
                    at, f"input name {input_name!r} {problem}", key=kind == "model"
                )
        if len(set(inputs)) != len(inputs):
            self.error(input_path, "input names must be unique")

        namespace = Namespace(set(inputs) | set(params))
        explicit: dict[str, tuple] = {}
        for i, raw in enumerate(layers):
            if isinstance(raw, NodeSpec) and raw.name is not None:
                path = (*base, "layers", i, "name")
                # Attribute names (nn.Module's) are checked once the op is known:
                # a function node's name is only a local variable of forward.
                problem = name_problem(raw.name, attribute=False)
                if problem:
                    self.error(path, f"node name {raw.name!r} {problem}")
                elif raw.name in explicit:
                    first = self.doc.where(explicit[raw.name])[0]
                    self.error(
                        path,
                        f"duplicate node name {raw.name!r} (first at line {first})",
                    )
                elif raw.name in inputs:
                    self.error(path, f"node name {raw.name!r} is already an input name")
                elif raw.name in params:
                    self.error(
                        path, f"node name {raw.name!r} is already a parameter name"
                    )
                explicit[raw.name] = path
                namespace.reserve(raw.name)

        nodes: list[NodeTemplate] = []
        defined: dict[str, NodeTemplate | None] = {n: None for n in inputs}
        later = self._all_names(layers, base)
        self.failed = set()
        for i, raw in enumerate(layers):
            node = self.node(
                raw, (*base, "layers", i), namespace, defined, later, inputs, i == 0
            )
            if node is not None:
                nodes.append(node)
                defined[node.name] = node
            elif isinstance(raw, NodeSpec) and raw.name is not None:
                self.failed.add(raw.name)
        out = self.outputs(outputs, (*base, "outputs"), defined, nodes)
        return GraphTemplate(name, kind, doc, params, inputs, nodes, out, base)  # type: ignore[arg-type]

    def _all_names(self, layers: list[Any], base: tuple) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        for i, raw in enumerate(layers):
            if isinstance(raw, NodeSpec) and raw.name:
                found.setdefault(raw.name, (*base, "layers", i))
        return found

    def node(
        self,
        raw: Any,
        path: tuple,
        namespace: Namespace,
        defined: dict[str, NodeTemplate | None],
        later: dict[str, tuple],
        inputs: list[str],
        first: bool,
    ) -> NodeTemplate | None:
        if isinstance(raw, str):
            raw = NodeSpec(op=raw)
            op_path: tuple = path
        else:
            op_path = (*path, "op")
        extras: dict[str, Any] = dict(raw.model_extra or {})
        if raw.op is None and raw.use is None:
            self.error(
                path, "a node needs 'op' (what it computes) or 'use' (a shared layer)"
            )
            return None
        if raw.op is not None and raw.use is not None:
            self.error(
                (*path, "use"), "a node has either 'op' or 'use', not both", key=True
            )
            return None
        op: OpInfo | None = None
        if raw.op is not None:
            try:
                op = resolve_op(raw.op, self.spec.blocks, self.allow_imports)
            except OpLookupError as exc:
                named = f"node {raw.name!r}: " if raw.name else ""
                self.error(op_path, f"{named}{exc}{_unknown_op_hint(raw.op)}")
                return None
            default = snake_case(raw.op)
            if raw.name is not None and op.kind != "function":
                problem = name_problem(raw.name)
                if problem and not name_problem(raw.name, attribute=False):
                    self.error(
                        (*path, "name"),
                        f"node name {raw.name!r} {problem}: a {op.kind} node's name "
                        "is an attribute of the generated module",
                    )
        else:
            default = "use"
            if raw.use is not None:
                problem = name_problem(raw.use)
                if problem:
                    self.error((*path, "use"), f"use: {raw.use!r} {problem}")
                    return None
                default = raw.use
            if extras or raw.args:
                key = next(iter(extras), "args")
                self.error(
                    (*path, key),
                    f"a 'use' node calls the module of {raw.use!r} as it is; it takes no "
                    f"arguments (received {key!r})",
                    key=True,
                )
            if raw.repeat is not None:
                self.error((*path, "repeat"), "'use' nodes cannot repeat", key=True)
        name = raw.name if raw.name is not None else namespace.fresh(default)
        label = f"node {name!r} ({raw.op or f'use {raw.use}'})"
        for key in extras:
            if not _valid_argument(key):
                self.error(
                    (*path, key),
                    f"{label}: {key!r} is not a valid argument name",
                    key=True,
                )
        if op is not None:
            self._written_in = raw.in_
            self.check_arguments(op, extras, path, label)
        if raw.use is not None:
            self.check_use(raw.use, (*path, "use"), defined, later)
        refs = self.refs(raw.in_, (*path, "in"), defined, later, inputs, first, label)
        if op is not None and isinstance(raw.in_, dict):
            self.check_input_names(op, raw.in_, (*path, "in"), label)
        patch = None
        if raw.patch is not None:
            patch = self.patch_nodes(raw, op, path)
        if raw.weights is not None and (raw.use is not None or path[0] == "blocks"):
            where = "a use node" if raw.use is not None else "a node inside a block"
            self.error(
                (*path, "weights"),
                f"weights cannot be given on {where}; give them on the model's node, "
                "or at the top level with a prefix",
                key=True,
            )
        return NodeTemplate(
            name=name,
            path=path,
            op=op,
            use=raw.use,
            inputs=refs,
            args=list(raw.args or []),
            kwargs=extras,
            repeat=raw.repeat,
            weights=raw.weights,
            patch=patch,
        )

    def patch_nodes(
        self, raw: NodeSpec, op: OpInfo | None, path: tuple
    ) -> dict[str, NodeTemplate]:
        """The nodes that replace submodules of a module after it is built."""
        if op is None or op.kind not in ("module", "factory"):
            self.error(
                (*path, "patch"),
                "patch replaces submodules of a module; this node builds none",
                key=True,
            )
            return {}
        if raw.repeat is not None:
            self.error((*path, "patch"), "a patched node cannot repeat", key=True)
        nodes: dict[str, NodeTemplate] = {}
        for child, value in (raw.patch or {}).items():
            where = (*path, "patch", child)
            spec = NodeSpec(op=value) if isinstance(value, str) else value
            if spec.op is None:
                self.error(where, "a patch is a node with an op", key=True)
                continue
            try:
                child_op = resolve_op(spec.op, self.spec.blocks, self.allow_imports)
            except OpLookupError as exc:
                self.error(
                    where if isinstance(value, str) else (*where, "op"), str(exc)
                )
                continue
            if child_op.kind not in ("module", "factory"):
                self.error(
                    where, f"a patch builds a module; {spec.op!r} is a {child_op.kind}"
                )
                continue
            nodes[child] = NodeTemplate(
                name=child.replace(".", "_"),
                path=where,
                op=child_op,
                use=None,
                inputs=None,
                args=list(spec.args or []),
                kwargs=dict(spec.model_extra or {}),
            )
        return nodes

    def check_arguments(
        self, op: OpInfo, extras: dict[str, Any], path: tuple, label: str
    ) -> None:
        """Every keyword argument must be one the op takes (when Python can tell)."""
        if op.kind == "block":
            decls = self.block_decls.get(op.name, {})
            for key in extras:
                if key not in decls:
                    self.error(
                        (*path, key),
                        f"{label} has no param {key!r}"
                        + suggest(key, list(decls))
                        + f"; block {op.name}'s params: {', '.join(decls) or 'none'}",
                        key=True,
                    )
            return
        arguments = arguments_of(op.target)
        if arguments is None or arguments.var_keyword:
            return
        names = arguments.accepted
        forward = (input_names(op) or []) if op.kind == "module" else []
        for key in extras:
            if key not in names and key in forward:
                value = extras[key]
                ref = value if isinstance(value, str) else "..."
                self.error(
                    (*path, key),
                    f"{label}: {key!r} is an input of {op.name}'s forward, not a "
                    f"constructor argument; give it with the inputs, by name: "
                    + inputs_by_name(op, self._written_in, key, ref),
                    key=True,
                )
            elif key not in names and _valid_argument(key):
                self.error(
                    (*path, key),
                    f"{label} has no argument {key!r}"
                    + suggest(key, list(names))
                    + f"; its arguments: {', '.join(names)}",
                    key=True,
                )

    def check_input_names(
        self, op: OpInfo, given: dict[str, Any], path: tuple, label: str
    ) -> None:
        """Inputs given by name must be names the op's inputs have."""
        if op.kind == "block":
            names = self.spec.blocks[op.name].inputs
        else:
            found = input_names(op)
            if found is None:
                return
            names = found
        for key in given:
            if key not in names and key.isidentifier() and not keyword.iskeyword(key):
                self.error(
                    (*path, key),
                    f"{label} has no input {key!r}"
                    + suggest(key, names)
                    + f"; its inputs: {', '.join(names)}",
                    key=True,
                )

    def check_use(
        self,
        target: str,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        later: dict,
    ) -> None:
        if target not in defined or defined[target] is None:
            if target in self.failed:
                return  # that node's own error says what is wrong
            if target in later:
                self.error(path, f"'use: {target}' refers to a node defined later")
            elif target in defined:
                self.error(path, f"'use: {target}' names an input, not a layer")
            else:
                self.error(
                    path,
                    f"'use: {target}': no earlier node is called {target!r}"
                    + suggest(target, [n for n, t in defined.items() if t is not None]),
                )
            return
        node = defined[target]
        assert node is not None
        if node.use is not None:
            self.error(
                path,
                f"'use: {target}' names a use node; name the original, {node.use!r}",
            )
        elif node.op is not None and node.op.kind == "function":
            self.error(
                path,
                f"'use: {target}': {target!r} is the function {node.op.name!r}, which holds no "
                "module to share",
            )

    def parse_ref(
        self,
        text: Any,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        later: dict[str, tuple],
        label: str,
    ) -> Ref | None:
        if not isinstance(text, str):
            self.error(
                path,
                f"{label}: a reference is a node or input name, received {text!r}",
            )
            return None
        name, *rest = text.split(".")
        try:
            index = tuple(int(p) for p in rest)
        except ValueError:
            self.error(
                path,
                f"{label}: bad reference {text!r}: after the name come only element "
                "numbers (lstm.0)",
            )
            return None
        if name not in defined:
            if name in self.failed:
                return None  # that node's own error says what is wrong
            if name in later:
                line = self.doc.where(later[name])[0]
                self.error(
                    path,
                    f"{label}: {name!r} is defined later in the graph (line {line}); a "
                    "node can only take earlier nodes or inputs",
                )
            else:
                self.error(
                    path,
                    f"{label}: unknown reference {name!r}"
                    + suggest(name, list(defined))
                    + f"; known here: {', '.join(defined) or 'none'}",
                )
            return None
        return Ref(name, index, path)

    def refs(
        self,
        raw: Any,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        later: dict[str, tuple],
        inputs: list[str],
        first: bool,
        label: str,
    ) -> list[Ref] | dict[str, Ref] | None:
        if raw is None:
            # The first node takes the first input; later ones the previous node.
            return [Ref(inputs[0], (), path)] if first and inputs else None
        if isinstance(raw, str):
            ref = self.parse_ref(raw, path, defined, later, label)
            return [ref] if ref else []
        if isinstance(raw, list):
            found = [
                self.parse_ref(r, (*path, i), defined, later, label)
                for i, r in enumerate(raw)
            ]
            return [r for r in found if r is not None]
        found_map = {
            k: self.parse_ref(v, (*path, k), defined, later, label)
            for k, v in raw.items()
        }
        for key in raw:
            if not key.isidentifier() or keyword.iskeyword(key):
                self.error((*path, key), f"{key!r} is not a valid input name", key=True)
        return {k: r for k, r in found_map.items() if r is not None}

    def outputs(
        self,
        raw: Any,
        path: tuple,
        defined: dict[str, NodeTemplate | None],
        nodes: list[NodeTemplate],
    ) -> Outputs:
        if raw is None:
            last = nodes[-1].name if nodes else next(iter(defined), "x")
            return Outputs("single", [Ref(last, (), path)], path=path)
        if isinstance(raw, str):
            ref = self.parse_ref(raw, path, defined, {}, "outputs")
            return Outputs("single", [ref] if ref else [], path=path)
        if isinstance(raw, list):
            found = [
                self.parse_ref(r, (*path, i), defined, {}, "outputs")
                for i, r in enumerate(raw)
            ]
            return Outputs("tuple", [r for r in found if r], path=path)
        keys: list[str] = []
        refs: list[Ref] = []
        for key, value in raw.items():
            ref = self.parse_ref(value, (*path, key), defined, {}, "outputs")
            if ref:
                keys.append(key)
                refs.append(ref)
        return Outputs("dict", refs, keys, path=path)

    # -- blocks ---------------------------------------------------------------

    def block_params(self, name: str, params: dict[str, Any]) -> dict[str, ParamDecl]:
        decls: dict[str, ParamDecl] = {}
        for pname, raw in params.items():
            path = ("blocks", name, "params", pname)
            problem = name_problem(pname, attribute=False)
            if problem:
                self.error(path, f"parameter name {pname!r} {problem}", key=True)
            if isinstance(raw, BlockParam):
                required = "default" not in raw.model_fields_set
                decls[pname] = ParamDecl(raw.type, raw.default, required, raw.doc)
            else:
                decls[pname] = ParamDecl("any", raw, False, None)
        return decls

    def check_recursion(self, templates: dict[str, GraphTemplate]) -> None:
        state: dict[str, int] = {}

        def visit(block: str, trail: list[str]) -> None:
            state[block] = 1
            for node in templates[block].nodes:
                if node.op is None or node.op.kind != "block":
                    continue
                used = node.op.name
                if state.get(used) == 1:
                    cycle = " -> ".join([*trail[trail.index(used) :], used])
                    self.error(
                        (*node.path, "op") if node.path else node.path,
                        f"block {used!r} uses itself ({cycle}); blocks cannot be recursive",
                    )
                elif used not in state:
                    visit(used, [*trail, used])
            state[block] = 2

        for block in templates:
            if block not in state:
                visit(block, [block])


def lower_spec(
    doc: Document,
    spec: SpecModel,
    params: dict[str, Any],
    allow_imports: frozenset[str] = frozenset(),
) -> tuple[GraphTemplate, dict[str, GraphTemplate]]:
    """The model's graph template and each block's. Raises SpecError with every problem found."""
    lowering = _Lowering(doc, spec, allow_imports)
    nn_names = module_names()
    problem = class_name_problem(spec.name)
    if problem:
        lowering.error(("name",), f"model name {spec.name!r} {problem}")
    blocks: dict[str, GraphTemplate] = {}
    for name, block in spec.blocks.items():
        lowering.block_decls[name] = lowering.block_params(name, block.params)
    for name, block in spec.blocks.items():
        problem = class_name_problem(name)
        if problem or name == spec.name:
            reason = problem or "is also the model's name"
            lowering.error(("blocks", name), f"block name {name!r} {reason}", key=True)
            continue
        if name in nn_names:
            lowering.error(
                ("blocks", name),
                f"block {name!r} would shadow torch.nn.{name}",
                key=True,
            )
            continue
        decls = lowering.block_decls[name]
        clash = set(decls) & set(block.inputs)
        for pname in clash:
            lowering.error(
                ("blocks", name, "params", pname),
                f"{pname!r} is both a param and an input",
                key=True,
            )
        blocks[name] = lowering.graph(
            name, "block", block.doc, decls, block.inputs, block.layers, block.outputs,
            ("blocks", name),
        )  # fmt: skip
        if blocks[name].outputs.kind == "dict":
            lowering.error(
                ("blocks", name, "outputs"),
                "a block returns one value or a list, not a mapping",
            )
    lowering.check_recursion(blocks)
    model = lowering.graph(
        spec.name,
        "model",
        spec.doc,
        params,
        list(spec.inputs),
        spec.layers,
        spec.outputs,
        (),
    )
    lowering.raise_errors()
    return model, blocks
