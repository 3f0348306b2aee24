"""Pass: validated spec -> graph templates (names given, ops and references resolved).

Takes ``ctx.spec`` and ``ctx.params``; gives ``ctx.model_template``,
``ctx.block_templates`` and ``ctx.weights`` (the weights to load at build time).
Every problem found is reported at once, in the order of the spec.
"""

from __future__ import annotations

import keyword
from typing import Any, Literal

from ...spec.errors import suggest
from ...spec.model import DTYPES, BlockParam, NodeSpec, SeqNodeSpec, SpecModel
from ...spec.yaml_source import Document
from ..hints import inputs_by_name, unknown_op_hint
from ..ir import (
    CompileContext,
    GraphTemplate,
    NodeTemplate,
    ParamDecl,
    Ref,
    TensorDecl,
)
from ..names import (
    Namespace,
    class_name_problem,
    name_problem,
    node_name_problem,
    snake_case,
)
from ..op_table import CREATION_OPS, record_of
from ..ops import (
    SEQUENTIAL,
    OpInfo,
    OpLookupError,
    arguments_of,
    input_names,
    module_names,
    resolve_op,
)
from ..references import References

__all__ = ["lower_spec", "run"]


def _valid_argument(key: str) -> bool:
    return (
        key.isascii()
        and key.isidentifier()
        and not keyword.iskeyword(key)
        and not key.startswith("__")
    )


class _Lowering(References):
    def __init__(
        self, doc: Document, spec: SpecModel, allow_imports: frozenset[str]
    ) -> None:
        super().__init__(doc)
        self.spec = spec
        self.allow_imports = allow_imports
        self.block_decls: dict[str, dict[str, ParamDecl]] = {}
        self._written_in: Any = None  # the 'in' of the node whose arguments are checked

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

        # Params are not in this namespace: a param ``dropout`` leaves the default
        # name of the first Dropout node ``dropout`` (the two never meet in the code).
        namespace = Namespace(set(inputs))
        explicit: dict[str, tuple] = {}
        for i, raw in enumerate(layers):
            if isinstance(raw, NodeSpec) and raw.name is not None:
                path = (*base, "layers", i, "name")
                # Attribute names (nn.Module's) are checked once the op is known:
                # a function node's name is only a local variable of forward.
                problem = node_name_problem(raw.name, attribute=False)
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
                explicit[raw.name] = path
                namespace.reserve(raw.name)

        nodes: list[NodeTemplate] = []
        defined: dict[str, NodeTemplate | None] = {n: None for n in inputs}
        later = self._all_names(layers, base)
        self.failed = set()
        first = True  # the first node that computes takes the first input
        for i, raw in enumerate(layers):
            node = self.node(
                raw, (*base, "layers", i), namespace, defined, later, inputs, first
            )
            is_tensor = isinstance(raw, NodeSpec) and (
                raw.param is not None or raw.buffer is not None
            )
            first = first and is_tensor
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
        if raw.seq is not None:
            return self.seq_node(
                raw, path, namespace, defined, later, inputs, first, extras
            )
        if raw.param is not None or raw.buffer is not None:
            return self.tensor_node(raw, path, extras)
        if raw.op is None and raw.use is None:
            self.error(
                path,
                "a node needs 'op' (what it computes) or 'use' (a shared layer), "
                "or is a 'seq' (an nn.Sequential of the nodes listed)",
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
                self.error(op_path, f"{named}{exc}{unknown_op_hint(raw.op)}")
                return None
            default = snake_case(raw.op)
            if raw.name is not None and op.kind != "function":
                problem = node_name_problem(raw.name)
                if problem and not node_name_problem(raw.name, attribute=False):
                    self.error(
                        (*path, "name"),
                        f"node name {raw.name!r} {problem}: a {op.kind} node's name "
                        "is an attribute of the generated module",
                    )
        else:
            default = "use"
            if raw.use is not None:
                problem = node_name_problem(raw.use)
                if problem:
                    self.error((*path, "use"), f"use: {raw.use!r} {problem}")
                    return None
                default = snake_case(raw.use)
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
            if raw.when is not None:
                self.error(
                    (*path, "when"),
                    "a 'use' node cannot be conditional: put the 'when' on the node "
                    "that builds the module",
                    key=True,
                )
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
        creation = op is not None and record_of(op).creation
        if creation and raw.in_ is None:
            refs: list[Ref] | dict[str, Ref] | None = []  # made from its arguments
        else:
            refs = self.refs(
                raw.in_, (*path, "in"), defined, later, inputs, first, label
            )
        like = None
        if raw.like is not None:
            if not creation:
                self.error(
                    (*path, "like"),
                    f"{label}: like: gives the device of a tensor a creation op "
                    f"makes ({', '.join(CREATION_OPS)}); {raw.op or 'use'} takes its "
                    "device from its inputs",
                    key=True,
                )
            else:
                like = self.parse_ref(raw.like, (*path, "like"), defined, later, label)
        if raw.call is not None and (
            op is None or op.kind not in ("module", "factory")
        ):
            kind = "a use node" if op is None else f"a {op.kind} node"
            self.error(
                (*path, "call"),
                f"{label}: call: gives keyword arguments to a module's forward; on "
                f"{kind} write them "
                + ("on the node it shares" if op is None else "as the node's keys"),
                key=True,
            )
        if op is not None and isinstance(raw.in_, dict):
            self.check_input_names(op, raw.in_, (*path, "in"), label)
        no_input = raw.in_ in ([], {}) or (raw.in_ is None and first and not inputs)
        if raw.when is not None and no_input:
            self.error(
                (*path, "when"),
                f"{label} has no input, so it cannot be conditional: a node whose "
                "'when' is false passes its first input through",
                key=True,
            )
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
        if raw.tie is not None:
            self.check_tie(raw, op, path)
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
            tie=raw.tie,
            like=like,
            call=raw.call,
            when=raw.when,
        )

    # -- seq nodes ------------------------------------------------------------

    def seq_node(
        self,
        raw: NodeSpec,
        path: tuple,
        namespace: Namespace,
        defined: dict[str, NodeTemplate | None],
        later: dict[str, tuple],
        inputs: list[str],
        first: bool,
        extras: dict[str, Any],
    ) -> NodeTemplate | None:
        """A node of the graph that is an ``nn.Sequential`` of its children."""
        name = raw.name if raw.name is not None else namespace.fresh("seq")
        if raw.name is not None:
            problem = name_problem(raw.name)
            if problem and not name_problem(raw.name, attribute=False):
                self.error(
                    (*path, "name"),
                    f"node name {raw.name!r} {problem}: a seq node's name is an "
                    "attribute of the generated module",
                )
        children = self.seq_body(raw, path, name, extras)
        refs = self.refs(
            raw.in_,
            (*path, "in"),
            defined,
            later,
            inputs,
            first,
            f"node {name!r} (seq)",
        )
        if isinstance(refs, dict) or (refs is not None and len(refs) != 1):
            self.error(
                (*path, "in"),
                f"node {name!r} (seq): an nn.Sequential takes one input; give 'in' "
                "one reference",
                key=True,
            )
        if raw.weights is not None and path[0] == "blocks":
            self.error(
                (*path, "weights"),
                "weights cannot be given on a node inside a block; give them on the "
                "model's node, or at the top level with a prefix",
                key=True,
            )
        if children is None:
            return None
        return NodeTemplate(
            name=name,
            path=path,
            op=SEQUENTIAL,
            use=None,
            inputs=refs,
            args=[],
            kwargs={},
            repeat=raw.repeat,
            weights=raw.weights,
            seq=children,
            when=raw.when,
        )

    def seq_body(
        self, raw: NodeSpec, path: tuple, name: str, extras: dict[str, Any]
    ) -> list[NodeTemplate] | None:
        """The children of a seq node (or child), after the checks on the node itself."""
        label = f"node {name!r} (seq)"
        for other in ("op", "use", "patch"):
            if getattr(raw, other) is not None:
                self.error(
                    (*path, other),
                    f"{label}: a node has either 'seq' (an nn.Sequential of the "
                    f"nodes listed) or '{other}', not both",
                    key=True,
                )
                return None
        if extras or raw.args:
            key = next(iter(extras), "args")
            self.error(
                (*path, key),
                f"{label}: a seq node takes no arguments (received {key!r}); give "
                "them to its children",
                key=True,
            )
        assert raw.seq is not None
        if not raw.seq:
            self.error(
                (*path, "seq"),
                f"{label}: a seq needs at least one child: list the nodes it chains",
                key=True,
            )
            return None
        children: list[NodeTemplate] = []
        keys: dict[str, tuple] = {}
        for i, item in enumerate(raw.seq):
            child = self.seq_child(item, (*path, "seq", i), f"{name}.{i}", keys)
            if child is not None:
                children.append(child)
        return children if len(children) == len(raw.seq) else None

    def seq_child(
        self, raw: Any, path: tuple, label_name: str, keys: dict[str, tuple]
    ) -> NodeTemplate | None:
        """One child of a seq: a module op, a block or a nested seq, chained."""
        if isinstance(raw, str):
            raw = SeqNodeSpec(op=raw)
            op_path: tuple = path
        else:
            op_path = (*path, "op")
        extras: dict[str, Any] = dict(raw.model_extra or {})
        label_name = raw.name if raw.name is not None else label_name
        shown = raw.op or (f"use {raw.use}" if raw.use is not None else "seq")
        label = f"node {label_name!r} ({shown})"
        ok = True
        if raw.in_ is not None:
            self.error(
                (*path, "in"),
                f"{label}: a child of a seq takes the previous child's output (the "
                "first takes the seq's input); give 'in' to the seq node instead",
                key=True,
            )
            ok = False
        if raw.use is not None:
            self.error(
                (*path, "use"),
                f"{label}: a child of a seq builds its own module; 'use' (a shared "
                "layer) is for nodes of a graph",
                key=True,
            )
            return None
        if raw.when is not None:
            self.error(
                (*path, "when"),
                f"{label}: a child of a seq cannot be conditional (an nn.Sequential "
                "numbers its children); put the 'when' on the seq node",
                key=True,
            )
            ok = False
        if raw.weights is not None:
            self.error(
                (*path, "weights"),
                f"{label}: weights are given on the seq node (its keys are the "
                "children's: 0.weight, ...), not on a child",
                key=True,
            )
            ok = False
        if raw.name is not None:
            ok = self.seq_key(raw, path, keys) and ok
        if raw.seq is not None:
            children = self.seq_body(raw, path, label_name, extras)
            if children is None or not ok:
                return None
            return NodeTemplate(
                name=label_name,
                path=path,
                op=SEQUENTIAL,
                use=None,
                inputs=None,
                args=[],
                kwargs={},
                repeat=raw.repeat,
                seq=children,
                key=raw.name,
            )
        if raw.op is None:
            self.error(
                path,
                f"{label}: a child of a seq needs 'op' (what it computes) or 'seq'",
            )
            return None
        try:
            op = resolve_op(raw.op, self.spec.blocks, self.allow_imports)
        except OpLookupError as exc:
            self.error(op_path, f"{label}: {exc}{unknown_op_hint(raw.op)}")
            return None
        if op.kind == "function":
            form = _module_form(op.name)
            hint = f": write {form}" if form else ": write it as a node of the graph"
            self.error(
                op_path,
                f"{label}: {op.name!r} is a function, but a child of a seq is a module "
                f"(an nn.Sequential holds modules){hint}",
            )
            return None
        for key in extras:
            if not _valid_argument(key):
                self.error(
                    (*path, key),
                    f"{label}: {key!r} is not a valid argument name",
                    key=True,
                )
        self._written_in = None
        self.check_arguments(op, extras, path, label)
        patch = self.patch_nodes(raw, op, path) if raw.patch is not None else None
        if not ok:
            return None
        return NodeTemplate(
            name=label_name,
            path=path,
            op=op,
            use=None,
            inputs=None,
            args=list(raw.args or []),
            kwargs=extras,
            repeat=raw.repeat,
            patch=patch,
            key=raw.name,
        )

    def seq_key(self, raw: NodeSpec, path: tuple, keys: dict[str, tuple]) -> bool:
        """A seq child's name: an identifier unique in its seq, or for a repeated
        child a template of ``${i}`` (checked for each copy when it is made)."""
        assert raw.name is not None
        where = (*path, "name")
        if "${" in raw.name:
            if raw.repeat is None:
                self.error(
                    where,
                    f"name {raw.name!r} is a template of the copy's index, but this "
                    "child does not repeat: give it a plain name, or a repeat",
                )
                return False
            return True
        problem = name_problem(raw.name)
        if problem:
            self.error(where, f"name {raw.name!r} {problem}")
            return False
        if raw.repeat is not None:
            self.error(
                where,
                f"name {raw.name!r} would name every copy of this repeated child; "
                f'name each copy with ${{i}} ("{raw.name}${{i}}") or leave the '
                "name out (copies are numbered)",
            )
            return False
        if raw.name in keys:
            first = self.doc.where(keys[raw.name])[0]
            self.error(
                where,
                f"duplicate name {raw.name!r} in this seq (first at line {first})",
            )
            return False
        keys[raw.name] = where
        return True

    def tensor_node(
        self, raw: NodeSpec, path: tuple, extras: dict[str, Any]
    ) -> NodeTemplate | None:
        """A ``param:`` or ``buffer:`` node: a tensor the module holds, no op."""
        kind: Literal["param", "buffer"] = (
            "param" if raw.param is not None else "buffer"
        )
        label = f"{kind} node {raw.name!r}" if raw.name else f"a {kind} node"
        if raw.param is not None and raw.buffer is not None:
            self.error(
                (*path, "buffer"), "a node is either a param or a buffer", key=True
            )
            return None
        if raw.name is None:
            self.error((*path, kind), f"a {kind} node needs a name", key=True)
            return None
        problem = name_problem(raw.name)
        if problem and not name_problem(raw.name, attribute=False):
            self.error(
                (*path, "name"),
                f"node name {raw.name!r} {problem}: a {kind} node's name is an "
                "attribute of the generated module",
            )
        written = raw.model_fields_set - {"name", kind}
        for key in ("op", "use", "in_", "args", "repeat", "weights", "patch", "tie"):
            if key in written:
                shown = "in" if key == "in_" else key
                self.error(
                    (*path, shown),
                    f"{label} holds a tensor of the module; it takes no {shown!r} "
                    "(use the node as an input of others)",
                    key=True,
                )
        allowed = {"init", "dtype"} | (
            {"requires_grad"} if kind == "param" else {"persistent"}
        )
        for key in extras:
            if key not in allowed:
                self.error(
                    (*path, key),
                    f"{label} has no key {key!r}"
                    + suggest(key, sorted(allowed))
                    + f"; its keys: {', '.join(sorted(allowed))}",
                    key=True,
                )
        for key in ("requires_grad", "persistent"):
            if key in extras and not isinstance(extras[key], bool):
                self.error((*path, key), f"{label}: {key} is true or false")
        dtype = extras.get("dtype")
        if dtype is not None and dtype not in DTYPES:
            self.error(
                (*path, "dtype"),
                f"{label}: unknown dtype {dtype!r}"
                + suggest(str(dtype), list(DTYPES))
                + f"; dtypes: {', '.join(DTYPES)}",
            )
        shape = list(raw.param if raw.param is not None else raw.buffer or [])
        for k, size in enumerate(shape):
            if isinstance(size, int) and size < 1:
                self.error(
                    (*path, kind, k),
                    f"{label}: size {k} is {size}; a size is a positive integer",
                )
        return NodeTemplate(
            name=raw.name,
            path=path,
            op=None,
            use=None,
            inputs=[],
            args=[],
            kwargs={},
            tensor=TensorDecl(
                kind=kind,
                shape=shape,
                init=extras.get("init"),
                dtype=dtype,
                persistent=bool(extras.get("persistent", True)),
                requires_grad=bool(extras.get("requires_grad", True)),
            ),
        )

    def check_tie(self, raw: NodeSpec, op: OpInfo | None, path: tuple) -> None:
        """``tie`` needs a module built by this node (its parameters are checked
        once the model is built)."""
        if op is None or op.kind not in ("module", "factory"):
            what = "a use node" if op is None else f"a {op.kind} node"
            self.error(
                (*path, "tie"),
                f"tie shares a parameter of the node's module; {what} builds none",
                key=True,
            )
        elif raw.repeat is not None:
            self.error((*path, "tie"), "a repeated node cannot tie", key=True)
        elif path[0] == "blocks":
            self.error(
                (*path, "tie"),
                "tie is written on a node of the model (its targets are paths in "
                "the model), not inside a block",
                key=True,
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
            for node in flat_nodes(templates[block].nodes):
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


def flat_nodes(nodes: list[NodeTemplate]) -> list[NodeTemplate]:
    """The nodes, each seq node followed by its children (nested ones included)."""
    found: list[NodeTemplate] = []
    for node in nodes:
        found.append(node)
        if node.seq is not None:
            found += flat_nodes(node.seq)
    return found


def _module_form(function: str) -> str | None:
    """The torch.nn layer that computes a function (``flatten`` -> ``Flatten``)."""
    plain = function.rsplit(".", 1)[-1].replace("_", "").lower()
    return next((n for n in module_names() if n.lower() == plain), None)


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


def run(ctx: CompileContext) -> None:
    assert ctx.spec is not None
    spec = ctx.spec
    model, blocks = lower_spec(ctx.document, spec, ctx.params, ctx.allow_imports)
    ctx.model_template, ctx.block_templates = model, blocks
    weights = [("", spec.weights, ("weights",))] if spec.weights is not None else []
    weights += [
        (node.name, node.weights, (*node.path, "weights"))
        for node in model.nodes
        if node.weights is not None
    ]
    ctx.weights = weights
