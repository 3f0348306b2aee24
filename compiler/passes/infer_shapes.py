"""Pass: graph templates -> classes, by walking each graph with its input shapes.

The walk evaluates every argument (expressions may read shapes of earlier nodes),
expands repeats, instantiates blocks, infers constructor arguments from the shapes
flowing in (``in_channels``, ``in_features``, ...), and finds each node's output
shape: by a closed-form rule for the common ops, else by running the op on the
meta device. Blocks are walked with symbolic parameters, so that their generated
class computes sizes from its own constructor arguments.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import typing
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ...spec.errors import SpecError, describe_value, suggest
from ...spec.model import DTYPES
from ...spec.yaml_source import Document
from ..expressions import (
    ExpressionError,
    Scope,
    Val,
    const,
    is_const,
    literal_ast,
    resolve_value,
)
from ..graph import Call, GraphTemplate, ModuleDef, NodeTemplate, Outputs, Ref
from ..meta import (
    MetaError,
    build_meta_module,
    from_meta,
    meta_inputs,
    module_facts,
    run_meta,
)
from ..names import Namespace
from ..ops import (
    INFERRED_ARGS,
    MAX_ELEMENTS,
    OpInfo,
    arguments_of,
    limit_problems,
    parameter_names,
    signature_of,
)
from ..shape_rules import FUNCTION_PARAMS, RULES, Fallback, ShapeCall, ShapeError
from ..values import BATCH, TensorValue, TupleValue, Value
from .lower import ParamDecl, inputs_by_name

__all__ = [
    "MAX_GRAPH_NODES",
    "MAX_REPEAT",
    "SEQUENCE_FUNCTIONS",
    "BlockUse",
    "GraphResult",
    "Instantiator",
]

#: Largest repeat count.
MAX_REPEAT = 10_000
#: Most nodes a model may expand to, counting the nodes of every block instance and copy.
MAX_GRAPH_NODES = 200_000
#: Functions that take their tensor inputs as one list.
SEQUENCE_FUNCTIONS = frozenset(
    {
        "cat",
        "concat",
        "concatenate",
        "stack",
        "hstack",
        "vstack",
        "dstack",
        "column_stack",
    }
)
# Constructor arguments written positionally in generated code, when they lead the signature.
_POSITIONAL_NAMES = frozenset(
    {
        "in_channels", "out_channels", "in_features", "out_features", "num_features",
        "num_groups", "num_channels", "normalized_shape", "input_size", "hidden_size",
        "embed_dim", "num_heads", "d_model", "nhead", "num_embeddings", "embedding_dim",
        "in1_features", "in2_features",
    }
)  # fmt: skip
_PY_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
    "list": list,
}
# The shape rule's hint for an Embedding given floats, and the one for a shared Embedding.
_DECLARE_INTEGERS = "(declare the input with dtype: int64)"
_SHARED_EMBEDDING = (
    "(a shared Embedding looks up integer indices, as in its first use: it cannot be "
    "called on floats; a projection onto its weights needs a custom module)"
)
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "array": "a list",
    "null": "null",
}
_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, (list, tuple)),
    "null": lambda v: v is None,
}


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    """Whether a value fits the JSON Schema of a constructor argument ({} fits all)."""
    if "anyOf" in schema:
        return any(_fits(value, option) for option in schema["anyOf"])
    if "enum" in schema:
        return value in schema["enum"]
    check = _TYPE_CHECKS.get(schema.get("type", ""))
    return check is None or check(value)


def _expected_words(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        words = [_expected_words(option) for option in schema["anyOf"]]
        return " or ".join(dict.fromkeys(words))
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    return _TYPE_WORDS.get(schema.get("type", ""), "another value")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass
class GraphResult:
    """A graph walked with concrete inputs: what its class holds and computes."""

    template: GraphTemplate
    modules: list[ModuleDef]
    calls: list[Call]
    output_value: Value | dict[str, Value]
    input_values: list[Value]
    hoisted: list[tuple[str, Val]]  # constructor parameters for values not expressible
    attributes: list[tuple[str, ast.expr]]  # forward-time constants set in __init__
    placeholders: dict[str, tuple[int, int]]  # input-size name -> (input index, dim)
    param_values: dict[str, Any]
    size: int = 0  # nodes, with block instances and repeated copies expanded


@dataclass
class BlockUse:
    """One use of a block: the walk of its graph, and what the parent passed."""

    result: GraphResult
    node_path: tuple


@dataclass
class _State:
    template: GraphTemplate
    symbolic: bool
    env: dict[str, Value | None] = field(default_factory=dict)
    modules: list[ModuleDef] = field(default_factory=list)
    module_by_name: dict[str, tuple[ModuleDef, NodeTemplate, dict[str, Val]]] = field(
        default_factory=dict
    )
    calls: list[Call] = field(default_factory=list)
    hoisted: list[tuple[str, Val]] = field(default_factory=list)
    attributes: list[tuple[str, ast.expr]] = field(default_factory=list)
    names: Namespace = field(default_factory=Namespace)
    scope: Scope | None = None
    size: int = 0


def _placeholder_names(
    inputs: list[str], values: list[Value]
) -> dict[tuple[int, int], str]:
    names: dict[tuple[int, int], str] = {}
    for i, (name, value) in enumerate(zip(inputs, values)):
        if not isinstance(value, TensorValue):
            continue
        prefix = "in" if len(inputs) == 1 else name
        rank = value.rank
        spatial = {4: ("height", "width"), 5: ("depth", "height", "width")}.get(
            rank, ()
        )
        for k in range(rank):
            if k == value.batch_dim:
                continue
            if k == rank - 1 and rank <= 3:
                word = "features"
            elif k == 1 and rank >= 4:
                word = "channels"
            elif spatial and k >= 2:
                word = spatial[k - 2]
            else:
                word = f"dim{k}"
            names[(i, k)] = f"{prefix}_{word}"
    return names


def _names_in(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _substitute(
    sym: ast.expr | None, mapping: dict[str, ast.expr | None]
) -> ast.expr | None:
    """Rewrite a child's symbolic size in the parent's terms; None if it cannot be."""
    if sym is None:
        return None
    missing = False

    class _Swap(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            nonlocal missing
            if node.id == "float":
                return node
            replacement = mapping.get(node.id)
            if replacement is None:
                missing = True
                return node
            return replacement

    import copy

    new = _Swap().visit(copy.deepcopy(sym))
    return None if missing else new


def _translate(value: Any, mapping: dict[str, ast.expr | None]) -> Any:
    if value is None:
        return None
    if isinstance(value, TensorValue):
        sym = tuple(_substitute(s, mapping) for s in value.sym)
        return TensorValue(value.shape, value.dtype, sym, value.batch_dim)
    if isinstance(value, TupleValue):
        return TupleValue(tuple(_translate(v, mapping) for v in value.items))
    return {k: _translate(v, mapping) for k, v in value.items()}


def _elements(value: TensorValue) -> int:
    """Elements per sample: the product of the sizes besides the batch dimension."""
    count = 1
    for k, n in enumerate(value.shape):
        if k != value.batch_dim:
            count *= n
    return count


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Instantiator:
    """Walks graph templates; one instance per compile."""

    def __init__(self, doc: Document, blocks: dict[str, GraphTemplate]) -> None:
        self.doc = doc
        self.blocks = blocks
        self.uses: dict[str, list[BlockUse]] = {}
        self._cache: dict[Any, GraphResult] = {}
        self.expanded = 0  # nodes of the model so far, blocks and repeats expanded

    # -- errors ---------------------------------------------------------------

    def file_of(self, path: tuple) -> str:
        """The base name of the file a node was written in (specs may extend others)."""
        return os.path.basename(self.doc.origin(path)[0])

    def fail(self, path: tuple, message: str, *, key: bool = False) -> SpecError:
        return self.doc.error(path, message, key=key)

    def node_fail(
        self, node: NodeTemplate, message: str, at: str | tuple | None = None
    ) -> SpecError:
        """An error about a node as a whole, at its ``at`` key when the spec writes one
        (``in`` for its inputs, an argument's name, or a path below the node such as
        ``("stride", 1)``), else at the node."""
        detail = ", ".join(f"{k}={_short(v)}" for k, v in list(node.kwargs.items())[:3])
        what = node.op_name + (f", {detail}" if detail else "")
        path = node.path
        below = at if isinstance(at, tuple) else (at,)
        if at is not None and (*node.path, *below) in self.doc.marks:
            path = (*node.path, *below)
        return self.fail(path, f"node {node.name!r} ({what}): {message}")

    # -- graphs ---------------------------------------------------------------

    def run(
        self,
        template: GraphTemplate,
        params: dict[str, Val],
        inputs: list[Value],
        symbolic: bool,
    ) -> GraphResult:
        state = _State(template, symbolic)
        state.names = Namespace(set(params) | set(template.inputs))
        placeholders: dict[str, tuple[int, int]] = {}
        if symbolic:
            names = _placeholder_names(template.inputs, inputs)
            for (i, k), name in names.items():
                name = state.names.fresh(name)
                placeholders[name] = (i, k)
                value = inputs[i]
                assert isinstance(value, TensorValue)
                sym = list(value.sym)
                sym[k] = ast.Name(name, ast.Load())
                inputs[i] = TensorValue(
                    value.shape, value.dtype, tuple(sym), value.batch_dim
                )
        for node in template.nodes:
            state.names.reserve(node.name)
        for name, value in zip(template.inputs, inputs):
            if not symbolic:
                self.check_input(name, value)
            state.env[name] = value
        state.scope = Scope(
            params, lambda ref: self._shape_of(state, ref), lambda: list(state.env)
        )
        previous: Value | None = inputs[0] if len(inputs) == 1 else None
        for node in template.nodes:
            previous = self.node(state, node, previous)
            state.env[node.name] = previous
        output_value = self.outputs(state, template.outputs)
        return GraphResult(
            template=template,
            modules=state.modules,
            calls=state.calls,
            output_value=output_value,
            input_values=inputs,
            hoisted=state.hoisted,
            attributes=state.attributes,
            placeholders=placeholders,
            param_values={k: v.value for k, v in params.items()},
            size=state.size,
        )

    def check_input(self, name: str, value: Value) -> None:
        """A declared model input within MAX_ELEMENTS elements per sample."""
        if isinstance(value, TensorValue) and _elements(value) > MAX_ELEMENTS:
            path: tuple = ("inputs", name, "shape")
            if path not in self.doc.marks:
                path = ("inputs", name)
            raise self.fail(
                path,
                f"input {name!r} {value.render()} has {_elements(value)} elements per "
                "sample, over the limit of 2**48",
            )

    def _shape_of(self, state: _State, ref: str) -> list[Val | None]:
        if ref not in state.env:
            raise ExpressionError(
                f"{ref!r} is not a node or input defined before this point"
                + suggest(ref, list(state.env))
            )
        value = state.env[ref]
        if not isinstance(value, TensorValue):
            raise ExpressionError(f"{ref!r} is a tuple, not a tensor; it has no .shape")
        return value.dim_vals()

    def outputs(self, state: _State, outputs: Outputs) -> Value | dict[str, Value]:
        values = [self.lookup(state, ref) for ref in outputs.refs]
        if outputs.kind == "single":
            return values[0]
        if outputs.kind == "tuple":
            return TupleValue(tuple(values))
        return dict(zip(outputs.keys, values))

    def lookup(self, state: _State, ref: Ref) -> Value:
        value = state.env.get(ref.name)
        for depth, k in enumerate(ref.index):
            if not isinstance(value, TupleValue):
                shown = ".".join([ref.name, *map(str, ref.index[:depth])])
                raise self.fail(
                    ref.path, f"{shown!r} is a single tensor, so {ref} is not defined"
                )
            if not -len(value.items) <= k < len(value.items):
                shown = ".".join([ref.name, *map(str, ref.index[:depth])])
                n = len(value.items)
                raise self.fail(
                    ref.path,
                    f"{ref} is out of range: {shown!r} returns {n} values "
                    f"({shown}.0 to {shown}.{n - 1})",
                )
            value = value.items[k]
        if value is None:
            raise self.fail(ref.path, f"{ref} is None (the op returns no tensor there)")
        return value

    # -- nodes ----------------------------------------------------------------

    def node(self, state: _State, node: NodeTemplate, previous: Value | None) -> Value:
        if node.inputs is None:
            if previous is None:
                raise self.node_fail(node, "has no input: give it one with in:")
            if isinstance(previous, TupleValue):
                prev = state.calls[-1].node if state.calls else "previous"
                raise self.node_fail(
                    node,
                    f"the previous node returns a tuple of {len(previous.items)}; "
                    f"choose an element with in: {prev}.0",
                )
            refs: list[Ref] | dict[str, Ref] = (
                [Ref(state.calls[-1].node)] if state.calls else []
            )
            values: list[Value] | dict[str, Value] = [previous]
        else:
            refs = node.inputs
            if isinstance(refs, dict):
                values = {k: self.lookup(state, r) for k, r in refs.items()}
            else:
                values = [self.lookup(state, r) for r in refs]
        if node.use is not None:
            return self.use_node(state, node, refs, values)
        assert node.op is not None
        count = self.repeat_count(state, node)
        if node.op.kind == "function":
            return self.function_node(state, node, refs, values, count)
        return self.module_node(state, node, refs, values, count)

    def repeat_count(self, state: _State, node: NodeTemplate) -> int | None:
        if node.repeat is None:
            return None
        path = (*node.path, "repeat")
        val = self.evaluate(state, node.repeat, path, what=f"{node.label}, repeat")
        if (
            not isinstance(val.value, int)
            or isinstance(val.value, bool)
            or val.value < 1
        ):
            raise self.fail(
                path,
                f"{node.label}: repeat must be a positive integer, received "
                f"{describe_value(val.value)}",
            )
        if val.value > MAX_REPEAT:
            raise self.fail(
                path,
                f"{node.label}: repeat {val.value} is over the limit of {MAX_REPEAT}",
            )
        return val.value

    def grow(self, state: _State, n: int, node: NodeTemplate, walked: bool) -> None:
        """Count ``n`` more nodes in this graph (and in the model, unless ``walked``:
        a block instance walked just now was counted node by node)."""
        state.size += n
        if not walked:
            self.expanded += n
        if self.expanded > MAX_GRAPH_NODES:
            raise self.node_fail(
                node,
                f"the model expands to more than {MAX_GRAPH_NODES} nodes (blocks and "
                "repeats included), the limit",
            )

    def evaluate(
        self,
        state: _State,
        raw: Any,
        path: tuple,
        extra: dict | None = None,
        *,
        what: str,
    ) -> Val:
        """The value of a spec value; errors name ``what`` (node and argument)."""
        assert state.scope is not None
        scope = state.scope.child(extra) if extra else state.scope
        try:
            return resolve_value(raw, scope)
        except ExpressionError as exc:
            raise self.fail(path, f"{what}: {exc}") from None

    def evaluate_node_args(
        self, state: _State, node: NodeTemplate, extra: dict | None
    ) -> tuple[list[Val], dict[str, Val]]:
        """A node's positional and keyword arguments, evaluated."""
        args = [
            self.evaluate(
                state,
                a,
                (*node.path, "args", j),
                extra,
                what=f"{node.label}, args[{j}]",
            )
            for j, a in enumerate(node.args)
        ]
        kwargs = {
            key: self.evaluate(
                state, v, (*node.path, key), extra, what=f"{node.label}, {key}"
            )
            for key, v in node.kwargs.items()
        }
        if "dtype" in kwargs and node.op is not None and node.op.kind != "block":
            kwargs["dtype"] = self.dtype_value(node, kwargs["dtype"])
        return args, kwargs

    def dtype_value(self, node: NodeTemplate, val: Val) -> Val:
        """``dtype: int64`` is ``torch.int64``: a dtype argument written by name."""
        if not isinstance(val.value, str):
            return val
        name = val.value.removeprefix("torch.")
        dtype = getattr(torch, name, None) if name.isidentifier() else None
        if not isinstance(dtype, torch.dtype):
            assert node.op is not None
            if node.op.import_module is not None:
                return val  # a custom op's own meaning of the word
            raise self.fail(
                (*node.path, "dtype"),
                f"{node.label}, dtype: expected a dtype name ({', '.join(DTYPES)}), "
                f"received {val.value!r}" + suggest(name, list(DTYPES)),
            )
        if val.sym is None or is_const(val.sym):
            return Val(dtype, literal_ast(dtype))
        # A block param: the block's class looks its value up at build time.
        getattr_call = ast.Call(
            ast.Name("getattr", ast.Load()),
            [ast.Name("torch", ast.Load()), val.sym],
            [],
        )
        return Val(dtype, getattr_call)

    def code(self, state: _State, node: NodeTemplate, arg: str, val: Val) -> ast.expr:
        """The expression for a constructor argument in the class being generated."""
        if not state.symbolic or is_const(val.sym):
            return literal_ast(val.value)
        if val.sym is not None:
            return val.sym
        name = state.names.fresh(f"{node.name}_{arg}")
        state.hoisted.append((name, Val(val.value, None)))
        return ast.Name(name, ast.Load())

    def forward_code(
        self, state: _State, node: NodeTemplate, arg: str, val: Val
    ) -> ast.expr:
        """The expression for a function argument used in forward."""
        if not state.symbolic or is_const(val.sym):
            return literal_ast(val.value)
        attr = state.names.fresh(f"{node.name}_{arg}")
        state.attributes.append((attr, self.code(state, node, arg, val)))
        return ast.Attribute(ast.Name("self", ast.Load()), attr, ast.Load())

    # -- functions ------------------------------------------------------------

    def function_node(
        self,
        state: _State,
        node: NodeTemplate,
        refs: list[Ref] | dict[str, Ref],
        values: list[Value] | dict[str, Value],
        count: int | None,
    ) -> Value:
        assert node.op is not None
        op = node.op
        sequence = op.name in SEQUENCE_FUNCTIONS
        value: Value | None = None
        for k in range(count or 1):
            extra = {"i": const(k)} if count is not None else None
            args, kwargs = self.evaluate_node_args(state, node, extra)
            if k > 0:
                assert value is not None
                values = [value]
                refs = [Ref(state.calls[-1].node)]
            self.check_function_limits(node, values, args, kwargs, sequence)
            try:
                value = self.function_shape(node, values, args, kwargs, sequence)
            except SpecError as exc:
                raise self.reference_as_argument(state, node, exc) or exc from None
            self.grow(state, 1, node, walked=False)
            # The last copy carries the node's name: references to the node mean it.
            last = count is None or k == count - 1
            name = node.name if last else state.names.fresh(node.name)
            state.calls.append(
                Call(
                    node=name,
                    callee=op.code,
                    inputs=refs,
                    sequence=sequence,
                    args=[
                        self.forward_code(state, node, f"arg{j}", a)
                        for j, a in enumerate(args)
                    ],
                    kwargs=[
                        (key, self.forward_code(state, node, key, v))
                        for key, v in kwargs.items()
                    ],
                    value=value,
                    line=self.doc.where(node.path)[0],
                    file=self.file_of(node.path),
                    op=op.name,
                )
            )
            if (
                count is not None
                and k < count - 1
                and not isinstance(value, TensorValue)
            ):
                raise self.node_fail(node, "repeats, so it must return one tensor")
        assert value is not None
        return value

    def reference_as_argument(
        self, state: _State, node: NodeTemplate, exc: SpecError
    ) -> SpecError | None:
        """The error to report instead of torch's ("must be Tensor, not str") when a
        keyword argument names a node or input: tensors are passed with ``in:``."""
        assert node.op is not None
        for key, raw in node.kwargs.items():
            if (
                isinstance(raw, str)
                and raw.split(".")[0] in state.env
                and (f"'{key}'" in exc.message or "not str" in exc.message)
            ):
                kind = "an input" if raw in state.template.inputs else "a node"
                return self.fail(
                    (*node.path, key),
                    f"{node.label}, {key}: {raw!r} is {kind}, but a keyword argument "
                    "is a constant; pass the tensor as an input, by name: "
                    + inputs_by_name(node.op, node.inputs, key, raw),
                    key=True,
                )
        return None

    def function_shape(
        self,
        node: NodeTemplate,
        values: list[Value] | dict[str, Value],
        args: list[Val],
        kwargs: dict[str, Val],
        sequence: bool,
    ) -> Value:
        assert node.op is not None
        rule = RULES.get(node.op.name)
        if (
            rule is not None
            and isinstance(values, list)
            and node.op.import_module is None
        ):
            names = [n for n, _ in FUNCTION_PARAMS.get(node.op.name, ())]
            bound = dict(kwargs)
            # A keyword the rule does not read, of a builtin whose names were not
            # checked before (it has no Python signature): torch must see it.
            unchecked = signature_of(node.op.target) is None and any(
                key not in names for key in kwargs
            )
            if len(args) <= len(names) and not unchecked:
                bound.update(zip(names, args))
                for name, default in FUNCTION_PARAMS.get(node.op.name, ()):
                    bound.setdefault(name, const(default))
                try:
                    value = rule(ShapeCall(node.op.name, list(values), bound))
                    return self.bounded(node, value)
                except ShapeError as exc:
                    raise self.node_fail(node, str(exc), exc.at) from None
                except (Fallback, TypeError, ValueError, IndexError, KeyError):
                    pass  # not covered by the rule: run the op on the meta device
                except ArithmeticError:
                    pass  # torch reports it, at the node
        arg_values = [a.value for a in args]
        kw_values = {k: v.value for k, v in kwargs.items()}
        if isinstance(values, dict):
            call_kwargs = {
                **dict(zip(values, meta_inputs(list(values.values())))),
                **kw_values,
            }
            call_args = arg_values
            like = None
        else:
            metas = meta_inputs(values)
            call_args = ([metas] if sequence else metas) + arg_values
            call_kwargs = kw_values
            like = values[0] if values and isinstance(values[0], TensorValue) else None
        try:
            result = run_meta(node.op.target, call_args, call_kwargs)
            return self.bounded(node, from_meta(result, like))
        except MetaError as exc:
            unknown = _UNEXPECTED_KEYWORD.search(str(exc))
            if unknown and unknown.group(1) in node.kwargs:
                key = unknown.group(1)
                names = parameter_names(node.op.target)
                raise self.fail(
                    (*node.path, key),
                    f"{node.label} has no argument {key!r}"
                    + suggest(key, names)
                    + (f"; its arguments: {', '.join(names)}" if names else ""),
                    key=True,
                ) from None
            shapes = self.describe_inputs(values)
            raise self.node_fail(node, f"{exc} (inputs: {shapes})") from None

    @staticmethod
    def describe_inputs(values: list[Value] | dict[str, Value]) -> str:
        """'[B,4,5], [B,6,7], run with B=7': torch's own message shows the stand-in
        batch size as a number, so say which."""
        listed = list(values.values()) if isinstance(values, dict) else values
        if isinstance(values, dict):
            text = ", ".join(f"{k}={v.render()}" for k, v in values.items())
        else:
            text = ", ".join(v.render() for v in values) or "none"
        batched = any(
            isinstance(v, TensorValue) and v.batch_dim is not None for v in listed
        )
        return f"{text}, run with B={BATCH}" if batched else text

    # -- modules --------------------------------------------------------------

    def module_node(
        self,
        state: _State,
        node: NodeTemplate,
        refs: list[Ref] | dict[str, Ref],
        values: list[Value] | dict[str, Value],
        count: int | None,
    ) -> Value:
        assert node.op is not None
        if count is not None and count > 1:
            self.check_repeat_inputs(node, values)
        copies: list[ModuleDef] = []
        value: Value | None = None
        bound: dict[str, Val] = {}
        for k in range(count or 1):
            extra = {"i": const(k)} if count is not None else None
            if k > 0:
                if not isinstance(value, TensorValue):
                    raise self.node_fail(node, "repeats, so it must return one tensor")
                values = [value]
            before = state.size
            if node.op.kind == "block":
                mdef, value, bound = self.block_instance(state, node, values, extra)
            else:
                mdef, value, bound = self.torch_module(state, node, values, extra)
                self.grow(state, 1, node, walked=False)
            copies.append(mdef)
            if k == 0 and count is not None:
                self.check_copies(node, count, state.size - before)
        assert value is not None
        if count is None:
            module = copies[0]
        else:
            for k, copy in enumerate(copies):
                copy.name = str(k)
            module = ModuleDef(
                name=node.name,
                op=node.op,
                ctor=ast.Call(
                    ast.Attribute(ast.Name("nn", ast.Load()), "Sequential", ast.Load()),
                    [c.ctor for c in copies],
                    [],
                ),
                line=copies[0].line,
                value_class="Sequential",
                children=copies,
                num_params=sum(c.num_params for c in copies),
            )
        state.modules.append(module)
        state.module_by_name[node.name] = (module, node, bound)
        state.calls.append(
            Call(
                node=node.name,
                callee=f"self.{node.name}",
                inputs=refs,
                sequence=False,
                args=[],
                kwargs=[],
                value=value,
                line=self.doc.where(node.path)[0],
                file=self.file_of(node.path),
                op=node.op.name,
            )
        )
        return value

    def check_repeat_inputs(
        self, node: NodeTemplate, values: list[Value] | dict[str, Value]
    ) -> None:
        """Each copy of a repeat after the first takes the previous copy's output as
        its one input: a node of several inputs cannot repeat."""
        assert node.op is not None
        if node.op.kind == "block":
            names = self.blocks[node.op.name].inputs
            what = f"block {node.op.name} takes {_count(len(names), 'input')}"
            what += f" ({', '.join(names)})"
        else:
            names = [str(k) for k in range(len(values))]
            what = f"it is given {_count(len(names), 'input')}"
        if len(names) > 1:
            raise self.fail(
                (*node.path, "repeat"),
                f"{node.label}: {what}, but a repeat chains its copies: each copy "
                "after the first takes the previous copy's output as its only input; "
                "repeat a node of one input, or write the copies as separate nodes",
                key=True,
            )

    def check_copies(self, node: NodeTemplate, count: int, each: int) -> None:
        """Fail before making the copies of a repeat that cannot fit the node limit."""
        if self.expanded + (count - 1) * each > MAX_GRAPH_NODES:
            raise self.fail(
                (*node.path, "repeat"),
                f"{node.label}: {count} copies of {each} nodes each would take the model "
                f"to more than {MAX_GRAPH_NODES} nodes (blocks and repeats expanded), "
                "the limit",
            )

    def bind_module_args(
        self,
        state: _State,
        node: NodeTemplate,
        op: OpInfo,
        first: TensorValue | None,
        extra: dict | None,
    ) -> tuple[dict[str, Val], set[str]]:
        """Evaluated constructor arguments, inferred ones included, in signature order."""
        arguments = arguments_of(op.target)
        args, kwargs = self.evaluate_node_args(state, node, extra)
        rank = first.rank if first is not None else None
        self.check_limits(
            node, op.name, [(k, v, (k,)) for k, v in kwargs.items()], rank
        )
        inferred: dict[str, Val] = {}
        for arg, dim in INFERRED_ARGS.get(op.name, ()):
            if first is None:
                break
            if (
                not -first.rank <= dim < first.rank
                or dim % first.rank == first.batch_dim
            ):
                raise self.node_fail(
                    node,
                    f"cannot infer {arg}: its input {first.render()} has no dim {dim}",
                )
            dim_val = first.dim_val(dim % first.rank)
            assert dim_val is not None
            if arg in kwargs:
                self.check_inferred(
                    node, arg, kwargs[arg].value, first, dim % first.rank
                )
                continue
            inferred[arg] = dim_val
        if arguments is None:
            merged = {**inferred, **kwargs}
            return merged, set(inferred)
        positional = [name for name in arguments.positional if name not in inferred]
        bound: dict[str, Val] = dict(inferred)
        if len(args) > len(positional):
            raise self.fail(
                (*node.path, "args"),
                f"{node.label} takes at most {_count(len(positional), 'positional argument')} "
                f"({', '.join(positional)}), received {len(args)}",
                key=True,
            )
        written: dict[str, tuple] = {}
        for j, (name, val) in enumerate(zip(positional, args)):
            bound[name] = val
            written[name] = (*node.path, "args", j)
        self.check_limits(
            node,
            op.name,
            [
                (name, val, ("args", j))
                for j, (name, val) in enumerate(zip(positional, args))
            ],
            rank,
        )
        for key, val in kwargs.items():
            if key in bound and key not in inferred:
                raise self.fail(
                    (*node.path, key),
                    f"{node.label}: {key!r} is also given in args",
                    key=True,
                )
            bound[key] = val
            written[key] = (*node.path, key)
        for name, at in written.items():
            expected = arguments.types.get(name, {})
            value = bound[name].value
            if not _fits(value, expected):
                raise self.fail(
                    at,
                    f"{node.label}, {name}: expected {_expected_words(expected)}, "
                    f"received {describe_value(value)}",
                )
        missing = [name for name in arguments.required if name not in bound]
        if missing:
            raise self.node_fail(
                node,
                f"missing required argument{'s' if len(missing) > 1 else ''} "
                + ", ".join(missing),
            )
        order = arguments.order
        ordered = dict(
            sorted(bound.items(), key=lambda kv: order.get(kv[0], len(order)))
        )
        return ordered, set(inferred)

    def check_limits(
        self,
        node: NodeTemplate,
        op_name: str,
        given: list[tuple[str, Val, tuple]],
        rank: int | None,
    ) -> None:
        """Numeric arguments in their ranges (ops.ARG_LIMITS), before any shape
        arithmetic or tensor is made of them: ``stride must be >= 1, got 0`` at the
        value (the list item) that is out of range."""
        for name, val, at in given:
            problems = limit_problems(op_name, name, val.value, rank)
            if problems:
                index, message = problems[0]
                raise self.node_fail(
                    node, message, at if index is None else (*at, index)
                )

    def check_function_limits(
        self,
        node: NodeTemplate,
        values: list[Value] | dict[str, Value],
        args: list[Val],
        kwargs: dict[str, Val],
        sequence: bool,
    ) -> None:
        """check_limits for a function's arguments: keywords by name, positional
        ones by the parameters that follow the tensor inputs."""
        assert node.op is not None
        listed = list(values.values()) if isinstance(values, dict) else values
        first = listed[0] if listed and isinstance(listed[0], TensorValue) else None
        rank = first.rank if first is not None else None
        given: list[tuple[str, Val, tuple]] = [(k, v, (k,)) for k, v in kwargs.items()]
        if args and isinstance(values, list):
            skip = 1 if sequence else len(values)
            names = parameter_names(node.op.target)[skip:]
            given += [(n, a, ("args", j)) for j, (n, a) in enumerate(zip(names, args))]
        self.check_limits(node, node.op.name, given, rank)

    def bounded(self, node: NodeTemplate, value: Value, context: str = "") -> Value:
        """The value, if no tensor in it has more than MAX_ELEMENTS elements per
        sample; else a located error, before any later node is made for it."""
        if isinstance(value, TupleValue):
            for item in value.items:
                if item is not None:
                    self.bounded(node, item, context)
        elif isinstance(value, TensorValue):
            count = _elements(value)
            if count > MAX_ELEMENTS:
                raise self.node_fail(
                    node,
                    f"{context}its output {value.render()} would have {count} "
                    "elements per sample, over the limit of 2**48",
                )
        return value

    def check_inferred(
        self, node: NodeTemplate, arg: str, given: Any, first: TensorValue, dim: int
    ) -> None:
        """An argument the compiler infers, written anyway: it must match the input."""
        hint = f"; leave {arg} out and nnspec infers it"
        if arg == "normalized_shape":
            shape = [given] if isinstance(given, int) else given
            n = len(shape) if isinstance(shape, (list, tuple)) else 0
            if 0 < n < first.rank and list(first.shape[first.rank - n :]) == list(
                shape
            ):
                return
            if n >= first.rank:
                have = f"has only {first.rank - 1} dimensions besides the batch"
            elif n > 1:
                have = f"ends with {list(first.shape[first.rank - n :])}"
            else:
                have = f"has {first.shape[dim]} in dim {dim}"
            raise self.fail(
                (*node.path, arg),
                f"{node.label}: {arg} is {given!r}, but its input {first.render()} "
                f"{have}{hint}",
            )
        if given != first.shape[dim]:
            raise self.fail(
                (*node.path, arg),
                f"{node.label}: {arg} is {given!r}, but its input {first.render()} has "
                f"{first.shape[dim]} in dim {dim}{hint}",
            )

    def ctor_ast(
        self,
        state: _State,
        node: NodeTemplate,
        code: str,
        bound: dict[str, Val],
        target: Any,
    ) -> ast.Call:
        arguments = arguments_of(target)
        order = arguments.names if arguments is not None else ()
        args: list[ast.expr] = []
        keywords: list[ast.keyword] = []
        leading = True
        for i, (name, val) in enumerate(bound.items()):
            expr = self.code(state, node, name, val)
            if (
                leading
                and i < len(order)
                and order[i] == name
                and name in _POSITIONAL_NAMES
            ):
                args.append(expr)
            else:
                leading = False
                keywords.append(ast.keyword(name, expr))
        func: ast.expr = ast.Name(code, ast.Load())
        return ast.Call(func, args, keywords)

    def torch_module(
        self,
        state: _State,
        node: NodeTemplate,
        values: list[Value] | dict[str, Value],
        extra: dict | None,
    ) -> tuple[ModuleDef, Value, dict[str, Val]]:
        assert node.op is not None
        op = node.op
        listed = list(values.values()) if isinstance(values, dict) else values
        first = listed[0] if listed and isinstance(listed[0], TensorValue) else None
        bound, _ = self.bind_module_args(state, node, op, first, extra)
        module = self.meta_module(node, op, bound, fresh=bool(node.patch))
        if not isinstance(module, torch.nn.Module):
            raise self.node_fail(
                node, f"{op.name} returned {type(module).__name__}, not an nn.Module"
            )
        patches = (
            self.apply_patches(state, node, module, values, extra) if node.patch else []
        )
        value = self.module_shape(node, op, module, bound, values, rules=not patches)
        ctor = self.ctor_ast(state, node, op.code, bound, op.target)
        mdef = self.module_def(node, op, ctor, module)
        mdef.patches = patches
        return mdef, value, bound

    def apply_patches(
        self,
        state: _State,
        node: NodeTemplate,
        module: torch.nn.Module,
        values: list[Value] | dict[str, Value],
        extra: dict | None,
    ) -> list[tuple[str, ast.expr]]:
        """Replace submodules as the node's ``patch`` says, each built for the input
        it receives when the module runs (found by running it on the meta device)."""
        assert node.patch is not None
        patches: list[tuple[str, ast.expr]] = []
        for child, patch in node.patch.items():
            assert patch.op is not None
            try:
                old = module.get_submodule(child)
            except AttributeError:
                known = [name for name, _ in module.named_modules() if name]
                raise self.fail(
                    patch.path,
                    f"{node.op_name} has no submodule {child!r}{suggest(child, known)}; "
                    f"its submodules: {', '.join(known[:20])}",
                    key=True,
                ) from None
            seen: list[Any] = []
            handle = old.register_forward_pre_hook(
                lambda _m, args, seen=seen: seen.append(args)
            )
            try:
                self.run_module(node, module, values)
            finally:
                handle.remove()
            if not seen or not seen[0] or not isinstance(seen[0][0], torch.Tensor):
                raise self.fail(
                    patch.path,
                    f"{child!r} is not called with a tensor in forward",
                    key=True,
                )
            received = from_meta(seen[0][0], None)
            assert isinstance(received, TensorValue)
            bound, _ = self.bind_module_args(state, patch, patch.op, received, extra)
            replacement = self.meta_module(patch, patch.op, bound, fresh=True)
            parent_name, _, attr = child.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, replacement)
            ctor = self.ctor_ast(state, patch, patch.op.code, bound, patch.op.target)
            patches.append((child, ctor))
        return patches

    def run_module(
        self,
        node: NodeTemplate,
        module: Any,
        values: list[Value] | dict[str, Value],
        context: str = "",
    ) -> Any:
        try:
            if isinstance(values, dict):
                kwargs = dict(zip(values, meta_inputs(list(values.values()))))
                return run_meta(module, [], kwargs)
            return run_meta(module, meta_inputs(values), {})
        except MetaError as exc:
            raise self.node_fail(
                node, f"{context}{exc} (inputs: {self.describe_inputs(values)})"
            ) from None

    def meta_module(
        self, node: NodeTemplate, op: OpInfo, bound: dict[str, Val], fresh: bool = False
    ) -> Any:
        self.check_module_valued(node, op)
        arguments = arguments_of(op.target)
        positional_only = arguments.positional_only if arguments else frozenset()
        args = [v.value for k, v in bound.items() if k in positional_only]
        kwargs = {k: v.value for k, v in bound.items() if k not in positional_only}
        try:
            return build_meta_module(op.target, args, kwargs, cache=not fresh)
        except MetaError as exc:
            raise self.node_fail(
                node, f"{op.class_name} cannot be built: {exc}"
            ) from None

    def check_module_valued(self, node: NodeTemplate, op: OpInfo) -> None:
        """A constructor argument that takes a module cannot be written in a spec."""
        takes = _module_valued(op.target)
        for key in node.kwargs:
            if key in takes:
                example = (
                    " ({op: TransformerEncoderLayer, repeat: N, d_model: ..., nhead: "
                    "...} is a TransformerEncoder's stack)"
                    if op.name == "TransformerEncoder"
                    else ""
                )
                raise self.fail(
                    (*node.path, key),
                    f"{node.label}: {key} takes a module, and module-valued "
                    "arguments are not supported (a spec writes numbers, strings and "
                    "lists): write the layers as nodes, in a block (blocks:) or with "
                    f"repeat{example}, or build the module in a factory of an allowed "
                    "package (a function annotated to return nn.Module, op: "
                    "package.module:function)",
                    key=True,
                )

    def module_def(
        self, node: NodeTemplate, op: OpInfo, ctor: ast.expr, module: Any
    ) -> ModuleDef:
        facts = module_facts(module)
        return ModuleDef(
            name=node.name,
            op=op,
            ctor=ctor,
            line=self.doc.where(node.path)[0],
            value_class=facts.class_name,
            param_names=facts.param_names,
            param_shapes=facts.param_shapes,
            nested=facts.nested,
            num_params=facts.num_params,
            kinds=facts.kinds,
        )

    def module_shape(
        self,
        node: NodeTemplate,
        op: OpInfo,
        module: Any,
        bound: dict[str, Val],
        values: list[Value] | dict[str, Value],
        rules: bool = True,
        context: str = "",
    ) -> Value:
        """The module's output for these inputs; errors are the node's, after
        ``context``."""
        rule = RULES.get(op.name) if op.import_module is None and rules else None
        if rule is not None and isinstance(values, list):
            arguments = arguments_of(op.target)
            full = dict(bound)
            for name, default in arguments.defaults if arguments else ():
                if name not in full:
                    full[name] = const(default)
            try:
                value = rule(ShapeCall(op.name, list(values), full))
                return self.bounded(node, value, context)
            except ShapeError as exc:
                message = str(exc)
                if node.use is not None and _DECLARE_INTEGERS in message:
                    # The input is the graph's own float tensor, not a declared one.
                    message = message.replace(_DECLARE_INTEGERS, _SHARED_EMBEDDING)
                raise self.node_fail(node, f"{context}{message}", exc.at) from None
            except (Fallback, TypeError, ValueError, IndexError, KeyError):
                pass  # not covered by the rule: run the op on the meta device
            except ArithmeticError:
                pass  # torch reports it, at the node
        result = self.run_module(node, module, values, context)
        like = values[0] if isinstance(values, list) and values else None
        try:
            value = from_meta(result, like if isinstance(like, TensorValue) else None)
            return self.bounded(node, value, context)
        except MetaError as exc:
            raise self.node_fail(node, f"{context}{exc}") from None

    # -- blocks ---------------------------------------------------------------

    def bind_block_params(
        self,
        state: _State,
        node: NodeTemplate,
        block: GraphTemplate,
        extra: dict | None,
    ) -> dict[str, Val]:
        decls: dict[str, ParamDecl] = block.params
        names = list(decls)
        if len(node.args) > len(names):
            raise self.fail(
                (*node.path, "args"),
                f"{node.label}: block {block.name} takes "
                f"{_count(len(names), 'param')} ({', '.join(names)}), received "
                f"{_count(len(node.args), 'positional argument')}",
                key=True,
            )
        # (Unknown param names were reported when the graph was lowered.)
        args, kwargs = self.evaluate_node_args(state, node, extra)
        given: dict[str, Val] = dict(zip(names, args))
        written = {name: (*node.path, "args", j) for j, name in enumerate(given)}
        for key, val in kwargs.items():
            if key in given:
                raise self.fail(
                    (*node.path, key),
                    f"{node.label}: {key!r} is also given in args",
                    key=True,
                )
            given[key] = val
            written[key] = (*node.path, key)
        for name, decl in decls.items():
            if name not in given and decl.required:
                raise self.node_fail(node, f"block {block.name} needs param {name!r}")
            if name in given and decl.type in _PY_TYPES:
                value = given[name].value
                ok = isinstance(value, _PY_TYPES[decl.type]) and not (
                    decl.type in ("int", "float") and isinstance(value, bool)
                )
                if not ok and not (value is None and not decl.required):
                    raise self.fail(
                        written[name],
                        f"{node.label}, param {name!r}: expected {decl.type}, "
                        f"received {describe_value(value)}",
                    )
        return given

    def block_inputs(
        self,
        node: NodeTemplate,
        block: GraphTemplate,
        values: list[Value] | dict[str, Value],
    ) -> list[Value]:
        if isinstance(values, dict):
            unknown = [k for k in values if k not in block.inputs]
            if unknown:
                raise self.fail(
                    (*node.path, "in", unknown[0]),
                    f"{node.label}: block {block.name} has no input {unknown[0]!r}"
                    + suggest(unknown[0], block.inputs)
                    + f"; its inputs: {', '.join(block.inputs)}",
                    key=True,
                )
            missing = [k for k in block.inputs if k not in values]
            if missing:
                raise self.node_fail(
                    node, f"block {block.name} needs input {missing[0]!r}", "in"
                )
            ordered = [values[k] for k in block.inputs]
        else:
            ordered = list(values)
        if len(ordered) != len(block.inputs):
            raise self.node_fail(
                node,
                f"block {block.name} takes {len(block.inputs)} input(s) "
                f"({', '.join(block.inputs)}), received {len(ordered)}",
                "in",
            )
        return ordered

    def block_instance(
        self,
        state: _State,
        node: NodeTemplate,
        values: list[Value] | dict[str, Value],
        extra: dict | None,
    ) -> tuple[ModuleDef, Value, dict[str, Val]]:
        assert node.op is not None
        block = self.blocks[node.op.name]
        given = self.bind_block_params(state, node, block, extra)
        inputs = self.block_inputs(node, block, values)
        child_params: dict[str, Val] = {}
        for name, decl in block.params.items():
            value = given[name].value if name in given else decl.default
            child_params[name] = Val(value, ast.Name(name, ast.Load()))
        walked_before = self.expanded
        result = self.run_block(block, child_params, inputs, node)
        self.grow(state, result.size, node, walked=self.expanded != walked_before)
        # What the parent passes: given params, used input sizes, hoisted values.
        used = set()
        for mdef in result.modules:
            used |= _names_in(mdef.ctor)
        for _, expr in result.attributes:
            used |= _names_in(expr)
        sizes: list[ast.keyword] = []
        keywords: list[ast.keyword] = []
        mapping: dict[str, ast.expr | None] = {}
        bound: dict[str, Val] = {}
        for pname, (i, k) in result.placeholders.items():
            value = inputs[i]
            assert isinstance(value, TensorValue)
            dim = Val(value.shape[k], value.sym[k])
            mapping[pname] = dim.sym if state.symbolic else literal_ast(dim.value)
            if pname in used:
                sizes.append(ast.keyword(pname, self.code(state, node, pname, dim)))
                bound[pname] = dim
        for name, decl in block.params.items():
            if name in given:
                val = given[name]
                keywords.append(ast.keyword(name, self.code(state, node, name, val)))
                mapping[name] = val.sym if state.symbolic else literal_ast(val.value)
                bound[name] = val
            else:
                mapping[name] = literal_ast(decl.default)
        for hname, hval in result.hoisted:
            keywords.append(ast.keyword(hname, self.code(state, node, hname, hval)))
            mapping[hname] = None
            bound[hname] = hval
        keywords = sizes + keywords
        ctor = ast.Call(ast.Name(block.name, ast.Load()), [], keywords)
        output = _translate(result.output_value, mapping)
        mdef = ModuleDef(
            name=node.name,
            op=node.op,
            ctor=ctor,
            line=self.doc.where(node.path)[0],
            value_class=block.name,
            children=result.modules,
            block=block.name,
            num_params=sum(m.num_params for m in result.modules),
        )
        self.uses.setdefault(block.name, []).append(BlockUse(result, node.path))
        return mdef, output, bound

    def run_block(
        self,
        block: GraphTemplate,
        params: dict[str, Val],
        inputs: list[Value],
        node: NodeTemplate,
    ) -> GraphResult:
        key = (
            block.name,
            tuple((k, repr(v.value)) for k, v in params.items()),
            tuple(
                (v.shape, v.dtype, v.batch_dim)
                if isinstance(v, TensorValue)
                else repr(v)
                for v in inputs
            ),
        )
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        fresh_inputs = [
            TensorValue.make(v.shape, v.dtype, None, v.batch_dim)
            if isinstance(v, TensorValue)
            else v
            for v in inputs
        ]
        try:
            result = self.run(block, params, fresh_inputs, symbolic=True)
        except SpecError as exc:
            # The mistake is inside the block; say which use of it led there.
            line = self.doc.where(node.path)[0]
            note = f" (in block {block.name}, as used by {node.label} at line {line})"
            raise SpecError(
                diagnostics=[
                    replace(d, message=d.message + note) for d in exc.diagnostics
                ],
                source=exc.source,
            ) from None
        self._cache[key] = result
        return result

    # -- shared layers --------------------------------------------------------

    def use_node(
        self,
        state: _State,
        node: NodeTemplate,
        refs: list[Ref] | dict[str, Ref],
        values: list[Value] | dict[str, Value],
    ) -> Value:
        assert node.use is not None
        module, original, bound = state.module_by_name[node.use]
        op = module.op
        if module.children and module.block is None:  # a repeat: run the chain again
            value: Value | None = None
            current = values
            for _ in module.children:
                value = self.shared_shape(state, node, original, op, bound, current)
                current = [value]
        else:
            value = self.shared_shape(state, node, original, op, bound, values)
        assert value is not None
        self.grow(state, 1, node, walked=False)
        state.calls.append(
            Call(
                node=node.name,
                callee=f"self.{node.use}",
                inputs=refs,
                sequence=False,
                args=[],
                kwargs=[],
                value=value,
                line=self.doc.where(node.path)[0],
                file=self.file_of(node.path),
                op=f"use {node.use}",
            )
        )
        return value

    def shared_shape(
        self,
        state: _State,
        node: NodeTemplate,
        original: NodeTemplate,
        op: OpInfo,
        bound: dict[str, Val],
        values: list[Value] | dict[str, Value],
    ) -> Value:
        if op.kind == "block":
            block = self.blocks[op.name]
            inputs = self.block_inputs(node, block, values)
            params = {
                name: Val(
                    bound[name].value if name in bound else decl.default, ast.Name(name)
                )
                for name, decl in block.params.items()
            }
            result = self.run_block(block, params, inputs, node)
            for pname, (i, k) in result.placeholders.items():
                value = inputs[i]
                if (
                    pname in bound
                    and isinstance(value, TensorValue)
                    and bound[pname].value != value.shape[k]
                ):
                    raise self.node_fail(
                        node,
                        f"shares {node.use!r}, which was built for {pname}="
                        f"{bound[pname].value}, but its input {value.render()} has "
                        f"{value.shape[k]} in dim {k}",
                    )
            mapping: dict[str, ast.expr | None] = {
                k: (v.sym if state.symbolic else literal_ast(v.value))
                for k, v in bound.items()
            }
            return _translate(result.output_value, mapping)
        module = self.meta_module(original, op, bound)
        context = f"shares {node.use!r}, built for other inputs: "
        return self.module_shape(node, op, module, bound, values, context=context)


def _holds_module(hint: Any) -> bool:
    if isinstance(hint, type):
        return issubclass(hint, torch.nn.Module)
    return any(_holds_module(arg) for arg in typing.get_args(hint))


@functools.cache
def _module_valued(target: Any) -> frozenset[str]:
    """The constructor arguments of a module class annotated to take a module."""
    if not isinstance(target, type):
        return frozenset()
    try:
        hints = typing.get_type_hints(vars(target).get("__init__", target.__init__))  # type: ignore[misc]
    except Exception:
        return frozenset()
    return frozenset(
        name for name, hint in hints.items() if name != "return" and _holds_module(hint)
    )


def model_inputs(spec_inputs: dict[str, Any]) -> list[Value]:
    """The model's input values: the declared shapes behind the batch dimension."""
    values: list[Value] = []
    for decl in spec_inputs.values():
        shape, dtype = (
            (decl, "float32") if isinstance(decl, list) else (decl.shape, decl.dtype)
        )
        full = (BATCH, *shape)
        sym = (None, *(const(n).sym for n in shape))
        values.append(TensorValue(full, getattr(torch, dtype), sym, 0))
    return values
